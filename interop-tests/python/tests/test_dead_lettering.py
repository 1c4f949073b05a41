"""Dead-lettering (x-dead-letter-exchange / x-dead-letter-routing-key): the
reasons (rejected, expired; maxlen is in test_length_limits.py, delivery_limit
in test_delivery_limit.py), the x-death header and the x-first-death-* headers,
CC/BCC handling, cycles, and what happens to the message's other properties.

x-death, as RabbitMQ 3.10 writes it: an array of tables, newest first, one
table per (queue, reason) pair. A table has count (long), reason, queue, time
(timestamp, seconds), exchange, routing-keys (array of longstr: the publish
routing key plus CC keys, never BCC keys) and original-expiration (only when the
message had an `expiration` property). When a (queue, reason) pair repeats, its
table moves to the front with count + 1 and keeps its first time, exchange and
routing-keys. x-first-death-reason/queue/exchange are set once.

RabbitMQ 3.13+ also sets x-last-death-reason/queue/exchange on every
dead-lettering; Warren follows 3.13/4.x there, so those assertions run only
against Warren (the 3.10 reference does not send them)."""

import pika
import pytest

from helpers import drain, get_one
from lifecycle import depth, is_recent



@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def sink(amqp, ch, kind="fanout", key=""):
    """A dead-letter exchange with one queue bound to it; returns (exchange, queue)."""
    dlx = amqp.exchange(ch, kind)
    dlq = amqp.queue(ch)
    ch.queue_bind(dlq, dlx, routing_key=key)
    return dlx, dlq


def is_warren(server_product):
    return server_product == "Warren"


def assert_last_death(headers, server_product, queue, reason, exchange):
    if is_warren(server_product):  # RabbitMQ >= 3.13 behaviour
        assert headers["x-last-death-queue"] == queue
        assert headers["x-last-death-reason"] == reason
        assert headers["x-last-death-exchange"] == exchange


def reject_one(ch, queue, requeue=False):
    method, _, _ = get_one(ch, queue, auto_ack=False)
    ch.basic_reject(method.delivery_tag, requeue=requeue)


def test_rejected_message_x_death_and_first_death_headers(amqp, ch, server_product):
    dlx, dlq = sink(amqp, ch)
    x = amqp.exchange(ch, "direct")
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_bind(src, x, routing_key="orders")
    props = pika.BasicProperties(
        headers={"app": "keep"},
        message_id="m-1",
        correlation_id="c-1",
        content_type="text/plain",
        priority=3,
        delivery_mode=2,
    )
    ch.basic_publish(x, "orders", b"payload", properties=props)
    reject_one(ch, src)

    method, got, body = get_one(ch, dlq)
    assert body == b"payload"
    assert method.exchange == dlx  # republished to the DLX ...
    assert method.routing_key == "orders"  # ... with the original routing key
    assert method.redelivered is False
    assert (got.message_id, got.correlation_id, got.content_type) == ("m-1", "c-1", "text/plain")
    assert (got.priority, got.delivery_mode, got.expiration) == (3, 2, None)

    h = got.headers
    assert h["app"] == "keep"
    [death] = h["x-death"]
    assert set(death) == {"count", "reason", "queue", "time", "exchange", "routing-keys"}
    assert death["count"] == 1
    assert death["reason"] == "rejected"
    assert death["queue"] == src
    assert death["exchange"] == x
    assert death["routing-keys"] == ["orders"]
    assert is_recent(death["time"])
    assert h["x-first-death-reason"] == "rejected"
    assert h["x-first-death-queue"] == src
    assert h["x-first-death-exchange"] == x
    assert_last_death(h, server_product, src, "rejected", x)
    assert depth(ch, src) == 0


def test_nack_without_requeue_dead_letters_in_order(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    for i in range(3):
        ch.basic_publish("", src, f"n{i}".encode())
    tags = [get_one(ch, src, auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    got = [get_one(ch, dlq) for _ in range(3)]
    assert [body for _, _, body in got] == [b"n0", b"n1", b"n2"]
    for method, props, _ in got:
        assert method.routing_key == src  # published to the default exchange
        [death] = props.headers["x-death"]
        assert (death["reason"], death["queue"], death["exchange"]) == ("rejected", src, "")
        assert death["routing-keys"] == [src]


def test_reject_with_requeue_does_not_dead_letter(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", src, b"again")
    reject_one(ch, src, requeue=True)
    method, props, body = get_one(ch, src)
    assert (body, method.redelivered, props.headers) == (b"again", True, None)
    assert drain(ch, dlq) == []


def test_no_dead_letter_exchange_means_dropped(amqp, ch):
    src = amqp.queue(ch)
    ch.basic_publish("", src, b"gone")
    reject_one(ch, src)
    assert depth(ch, src) == 0


def test_per_message_ttl_expiry_records_original_expiration(amqp, ch, server_product):
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", src, b"old news", properties=pika.BasicProperties(expiration="150"))
    method, props, body = get_one(ch, dlq)
    assert body == b"old news"
    assert props.expiration is None  # removed so it cannot expire again downstream
    h = props.headers
    [death] = h["x-death"]
    assert death["reason"] == "expired"
    assert death["queue"] == src
    assert death["exchange"] == ""
    assert death["routing-keys"] == [src]
    assert death["original-expiration"] == "150"
    assert death["count"] == 1
    assert h["x-first-death-reason"] == "expired"
    assert_last_death(h, server_product, src, "expired", "")


def test_queue_ttl_expiry_keeps_a_longer_message_expiration_as_original(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 150})
    ch.basic_publish("", src, b"a", properties=pika.BasicProperties(expiration="100000"))
    ch.basic_publish("", src, b"b")  # no expiration: no original-expiration field
    (_, pa, _), (_, pb, _) = get_one(ch, dlq), get_one(ch, dlq)
    assert pa.expiration is None
    assert pa.headers["x-death"][0]["reason"] == "expired"
    assert pa.headers["x-death"][0]["original-expiration"] == "100000"
    assert "original-expiration" not in pb.headers["x-death"][0]


def test_rejected_message_with_expiration_also_records_original_expiration(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", src, b"r", properties=pika.BasicProperties(expiration="60000"))
    reject_one(ch, src)
    _, props, _ = get_one(ch, dlq)
    assert props.expiration is None
    death = props.headers["x-death"][0]
    assert (death["reason"], death["original-expiration"]) == ("rejected", "60000")


def test_dead_letter_routing_key_replaces_the_key_and_removes_cc(amqp, ch):
    dlx, dlq = sink(amqp, ch, "direct", key="retry")
    x = amqp.exchange(ch, "direct")
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "retry"})
    ch.queue_bind(src, x, routing_key="orders")
    headers = {"CC": ["audit"], "BCC": ["secret"], "keep": 1}
    ch.basic_publish(x, "orders", b"m", properties=pika.BasicProperties(headers=headers))
    reject_one(ch, src)
    method, props, _ = get_one(ch, dlq)
    assert method.routing_key == "retry"
    assert "CC" not in props.headers  # removed because the routing key was replaced
    assert "BCC" not in props.headers
    assert props.headers["keep"] == 1
    # x-death records the keys the message had: publish key + CC, not BCC
    assert props.headers["x-death"][0]["routing-keys"] == ["orders", "audit"]


def test_without_dead_letter_routing_key_cc_and_bcc_keys_route_again(amqp, ch, server_product):
    # The DLX routes with every key the message was published with, BCC
    # included; the CC header stays, BCC stays hidden. (Warren does not keep BCC
    # keys once the message is queued, so its dead letters follow key and CC
    # only: a known difference, listed in the README.)
    dlx = amqp.exchange(ch, "direct")
    queues = {}
    for key in ("orders", "audit", "secret", "other"):
        queues[key] = amqp.queue(ch)
        ch.queue_bind(queues[key], dlx, routing_key=key)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.queue_bind(src, "amq.direct", routing_key="orders")
    headers = {"CC": ["audit"], "BCC": ["secret"]}
    ch.basic_publish("amq.direct", "orders", b"m", properties=pika.BasicProperties(headers=headers))
    reject_one(ch, src)
    keys = ("orders", "audit") if is_warren(server_product) else ("orders", "audit", "secret")
    for key in keys:
        method, props, body = get_one(ch, queues[key])
        assert body == b"m", key
        assert method.routing_key == "orders", key
        assert props.headers["CC"] == ["audit"], key
        assert "BCC" not in props.headers, key
        assert props.headers["x-death"][0]["routing-keys"] == ["orders", "audit"], key
    assert drain(ch, queues["other"]) == []
    if is_warren(server_product):
        assert drain(ch, queues["secret"]) == []


def test_dead_letter_exchange_that_does_not_exist_drops_silently(amqp, ch):
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": amqp.name("missing")})
    ch.basic_publish("", src, b"m")
    reject_one(ch, src)
    ch.basic_publish("", src, b"still fine")  # confirmed: the channel is healthy
    assert depth(ch, src) == 1


def test_x_death_history_newest_first_with_counts(amqp, ch, server_product):
    """W (work) --reject--> DX --> T (TTL 200 ms) --expire--> X2 "back" --> W, twice.

    After two rounds: [T/expired count 2, W/rejected count 2]. Each table keeps
    the exchange and routing keys of the first time, although the second
    rejection from W happened to a message that came through X2/"back"."""
    x = amqp.exchange(ch, "direct")
    dx = amqp.exchange(ch, "fanout")
    x2 = amqp.exchange(ch, "direct")
    w = amqp.queue(ch, arguments={"x-dead-letter-exchange": dx})
    ch.queue_bind(w, x, routing_key="job")
    ch.queue_bind(w, x2, routing_key="back")
    t = amqp.queue(
        ch,
        arguments={"x-dead-letter-exchange": x2, "x-dead-letter-routing-key": "back", "x-message-ttl": 200},
    )
    ch.queue_bind(t, dx)
    ch.basic_publish(x, "job", b"work", properties=pika.BasicProperties(headers={"CC": ["copy"]}))

    method, props, _ = get_one(ch, w, auto_ack=False)
    assert (method.exchange, method.routing_key, props.headers) == (x, "job", {"CC": ["copy"]})
    ch.basic_reject(method.delivery_tag, requeue=False)

    method, props, _ = get_one(ch, w, auto_ack=False)
    assert (method.exchange, method.routing_key) == (x2, "back")
    h = props.headers
    assert "CC" not in h  # T replaced the routing key
    assert [(d["queue"], d["reason"], d["count"]) for d in h["x-death"]] == [
        (t, "expired", 1),
        (w, "rejected", 1),
    ]
    t_death, w_death = h["x-death"]
    assert (t_death["exchange"], t_death["routing-keys"]) == (dx, ["job", "copy"])
    assert (w_death["exchange"], w_death["routing-keys"]) == (x, ["job", "copy"])
    assert (h["x-first-death-queue"], h["x-first-death-reason"], h["x-first-death-exchange"]) == (
        w,
        "rejected",
        x,
    )
    assert_last_death(h, server_product, t, "expired", dx)
    ch.basic_reject(method.delivery_tag, requeue=False)

    method, props, _ = get_one(ch, w, auto_ack=False)
    h = props.headers
    assert [(d["queue"], d["reason"], d["count"]) for d in h["x-death"]] == [
        (t, "expired", 2),
        (w, "rejected", 2),
    ]
    t_death, w_death = h["x-death"]
    assert (t_death["exchange"], t_death["routing-keys"]) == (dx, ["job", "copy"])
    assert (w_death["exchange"], w_death["routing-keys"]) == (x, ["job", "copy"])
    assert all(is_recent(d["time"]) for d in h["x-death"])
    assert (h["x-first-death-queue"], h["x-first-death-reason"], h["x-first-death-exchange"]) == (
        w,
        "rejected",
        x,
    )
    assert_last_death(h, server_product, t, "expired", dx)
    ch.basic_ack(method.delivery_tag)


def test_queue_dead_lettering_to_itself_by_expiry_drops_the_message(amqp, ch):
    # DLX "" without a routing key sends the message back to the same queue:
    # a cycle without any rejection, so RabbitMQ drops it.
    q = amqp.queue(ch, arguments={"x-dead-letter-exchange": "", "x-message-ttl": 100})
    ch.basic_publish("", q, b"loop")
    ch.connection.sleep(1.0)  # several TTLs: it would have come back by now
    assert depth(ch, q) == 0
    assert ch.basic_get(q)[0] is None


def test_two_queue_expiry_cycle_drops_the_message(amqp, ch):
    a, b = amqp.name("q.a"), amqp.name("q.b")
    amqp.queue(ch, a, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": b, "x-message-ttl": 100})
    amqp.queue(ch, b, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": a, "x-message-ttl": 100})
    ch.basic_publish("", a, b"ping")
    ch.connection.sleep(1.0)
    assert (depth(ch, a), depth(ch, b)) == (0, 0)


def test_queue_dead_lettering_to_itself_by_reject_is_not_a_cycle(amqp, ch, server_product):
    q = amqp.queue(ch, arguments={"x-dead-letter-exchange": ""})
    ch.basic_publish("", q, b"boomerang")
    for round_ in (1, 2, 3):
        reject_one(ch, q)
        method, props, body = get_one(ch, q, auto_ack=False)
        assert body == b"boomerang"
        assert method.redelivered is False  # a new message, not a redelivery
        [death] = props.headers["x-death"]
        assert (death["queue"], death["reason"], death["count"]) == (q, "rejected", round_)
        assert props.headers["x-first-death-queue"] == q
        assert_last_death(props.headers, server_product, q, "rejected", "")
        ch.basic_nack(method.delivery_tag, requeue=True)


def test_republished_x_death_header(amqp, ch, server_product):
    """A consumer republishes a dead-lettered message with its headers, and it
    is dead-lettered again from the same queue for the same reason.

    RabbitMQ <= 3.12 (and 3.13.3+) reads the client's x-death: count becomes 2.
    RabbitMQ 4.x ignores an x-death header from a publisher (it only knows the
    deaths it recorded itself): the broker's x-death replaces it, count 1.
    Warren follows 3.13.3+: retry loops that republish a dead-lettered message
    themselves keep counting, as most of them expect."""
    dlx, dlq = sink(amqp, ch)
    src = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", src, b"again")
    reject_one(ch, src)
    _, props, _ = get_one(ch, dlq)
    assert props.headers["x-death"][0]["count"] == 1

    ch.basic_publish("", src, b"again", properties=pika.BasicProperties(headers=props.headers))
    reject_one(ch, src)
    _, props, _ = get_one(ch, dlq)
    [death] = props.headers["x-death"]
    assert (death["queue"], death["reason"]) == (src, "rejected")
    assert death["count"] == 2


@pytest.mark.warren_only
def test_x_last_death_headers(amqp, ch):
    """RabbitMQ 3.13+: x-last-death-{reason,queue,exchange} name the most recent
    dead-lettering (exchange = the one the message was published to before it);
    x-first-death-* never change."""
    x = amqp.exchange(ch, "direct")
    dx = amqp.exchange(ch, "fanout")
    w = amqp.queue(ch, arguments={"x-dead-letter-exchange": dx})
    ch.queue_bind(w, x, routing_key="k")
    t = amqp.queue(
        ch, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": w, "x-message-ttl": 100}
    )
    ch.queue_bind(t, dx)
    ch.basic_publish(x, "k", b"m")
    reject_one(ch, w)  # w/rejected (exchange x), then t/expired (exchange dx)
    _, props, _ = get_one(ch, w)
    h = props.headers
    assert (h["x-first-death-reason"], h["x-first-death-queue"], h["x-first-death-exchange"]) == ("rejected", w, x)
    assert (h["x-last-death-reason"], h["x-last-death-queue"], h["x-last-death-exchange"]) == ("expired", t, dx)
    assert [(d["queue"], d["reason"]) for d in h["x-death"]] == [(t, "expired"), (w, "rejected")]
