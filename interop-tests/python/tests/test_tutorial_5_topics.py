"""Tutorial 5: topic exchange -- `*` matches exactly one word, `#` zero or
more words; `#` alone matches everything; empty words are words."""

from helpers import drain

KEYS = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "quick.brown.fox",
    "orange",
    "quick.orange.male.rabbit",
    "lazy.orange.male.rabbit",
    "lazy",
    "a.b",
    "a.x.b",
    "a.x.y.b",
    "a.b.c",
    "x.a.b",
    "a..b",
    "a.",
    ".a",
    "",
]

# binding pattern -> routing keys (from KEYS) that must reach it
EXPECTED = {
    "*.orange.*": {"quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"},
    "*.*.rabbit": {"quick.orange.rabbit", "lazy.pink.rabbit"},
    "lazy.#": {
        "lazy.orange.elephant",
        "lazy.brown.fox",
        "lazy.pink.rabbit",
        "lazy.orange.male.rabbit",
        "lazy",
    },
    "#": set(KEYS),
    "a.#.b": {"a.b", "a.x.b", "a.x.y.b", "a..b"},
    "a.*.b": {"a.x.b", "a..b"},
    "a.*": {"a.b", "a."},
    "*.a": {".a"},
    "#.b": {"a.b", "a.x.b", "a.x.y.b", "a..b", "x.a.b"},
    "orange": {"orange"},
    "*": {"orange", "lazy"},  # one word; "" has zero words
}


def test_topic_patterns(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    x = amqp.exchange(ch, "topic")
    queues = {}
    for pattern in EXPECTED:
        q = amqp.queue(ch)
        ch.queue_bind(q, x, routing_key=pattern)
        queues[pattern] = q

    for key in KEYS:
        ch.basic_publish(x, key, key.encode())

    for pattern, q in queues.items():
        got = [b.decode() for b in drain(ch, q)]
        assert len(got) == len(set(got)), f"{pattern!r} got duplicates: {got}"
        assert set(got) == EXPECTED[pattern], f"binding {pattern!r}"


def test_topic_queue_with_overlapping_bindings_gets_one_copy(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    x = amqp.exchange(ch, "topic")
    q = amqp.queue(ch)
    for pattern in ("*.orange.*", "*.*.rabbit", "#"):
        ch.queue_bind(q, x, routing_key=pattern)
    ch.basic_publish(x, "quick.orange.rabbit", b"once")
    assert drain(ch, q) == [b"once"]


def test_topic_exchange_on_amq_topic(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch)
    key = f"{amqp.name('k')}.kern.critical"
    prefix = key.rsplit(".", 2)[0]
    ch.queue_bind(q, "amq.topic", routing_key=f"{prefix}.*.critical")
    ch.basic_publish("amq.topic", key, b"disk full")
    ch.basic_publish("amq.topic", f"{prefix}.kern.info", b"noise")
    assert drain(ch, q) == [b"disk full"]
