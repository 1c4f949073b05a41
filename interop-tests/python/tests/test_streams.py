"""Streams (queue.declare x-queue-type=stream) over AMQP 0-9-1, as RabbitMQ has them.

A stream is an append-only log: consuming does not remove anything, every
consumer reads from its own position (x-stream-offset on basic.consume), and
each delivery carries its offset in the x-stream-offset header (a 64-bit
integer). Acks only return credit: a stream consumer must set a per-consumer
prefetch, must not use no_ack, and basic.get / queue.purge are refused.
Retention (x-max-length-bytes, x-max-age) drops whole segments, never the one
being written, and only runs when a segment rolls over.

Written against RabbitMQ 3.10.8 first. Where RabbitMQ 3.x answers with a crash
(541 INTERNAL_ERROR) or a connection close that later versions dropped, the
test says so and checks each broker's answer. Warren-only tests (filtering
per message, server-side offset tracking) are marked warren_only.

RabbitMQ facts these tests rely on (3.10.8, probed with pika):
- offsets start at 0 and are consecutive as long as the stream stays in one
  segment; each new segment starts with a tracking chunk that takes an offset
  of its own, so with tiny segments the offsets skip (retention tests);
- queue.declare-ok reports 0 consumers and a lagging message count, so
  nothing here asserts on them;
- array and table headers are dropped when a message is stored (AMQP 1.0
  conversion), a decimal header crashes the publish (541): the header tests
  use strings, integers and booleans only."""

import datetime
import time

import pika
import pika.compat
import pika.exceptions
import pytest

from helpers import WAIT_S, expect_channel_error, settle, wait_until

STREAM = {"x-queue-type": "stream"}


# -- helpers -------------------------------------------------------------------


def stream(amqp, ch, **arguments):
    """Declare a durable stream with a unique name (tracked for cleanup)."""
    return amqp.queue(ch, durable=True, arguments={**STREAM, **arguments})


def confirm_channel(amqp, conn=None):
    ch = (conn or amqp.connect()).channel()
    ch.confirm_delivery()
    return ch


def publish(ch, queue, bodies, headers=None):
    """Publish each body to the stream (ch in confirm mode: each one confirmed)."""
    for body in bodies:
        props = pika.BasicProperties(headers=dict(headers)) if headers else None
        ch.basic_publish("", queue, body, properties=props)


def numbered(prefix, n, start=0):
    return [f"{prefix}{i}".encode() for i in range(start, start + n)]


def server_properties(conn):
    props = conn._impl.server_properties or {}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in props.items() if k in ("product", "version")}


def is_rabbitmq_3(conn):
    """RabbitMQ before 4.0 refuses basic.nack/basic.reject on a stream (540)."""
    props = server_properties(conn)
    if props.get("product") != "RabbitMQ":
        return False
    return int(str(props.get("version", "0")).split(".")[0]) < 4


def expect_connection_error(conn, code, fn, *args, **kwargs):
    """Run fn, expect the broker to close the whole connection with `code`
    (540 NOT_IMPLEMENTED, 541 INTERNAL_ERROR); return the reply text."""
    deadline = time.monotonic() + WAIT_S
    try:
        fn(*args, **kwargs)
        while conn.is_open and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
    except pika.exceptions.ConnectionClosedByBroker as exc:
        assert exc.reply_code == code, f"expected connection close {code}, got {exc.reply_code} {exc.reply_text!r}"
        return exc.reply_text
    raise AssertionError(f"expected connection close {code}, but the connection is {'open' if conn.is_open else 'closed'}")


class Reader:
    """One stream consumer on its own connection (or a new channel on `conn`,
    or on channel `ch`): records (offset, body, method, properties) per
    delivery and acks each one at once unless ack=False (acks only return
    credit on a stream). prefetch=None leaves the channel's QoS alone."""

    def __init__(self, amqp, queue, offset=None, prefetch=100, ack=True, conn=None, arguments=None, tag=None, ch=None):
        self.conn = ch.connection if ch else (conn or amqp.connect())
        self.ch = ch or self.conn.channel()
        if prefetch is not None:
            self.ch.basic_qos(prefetch_count=prefetch)
        self.ack = ack
        self.got = []
        self.cancelled = []
        self.ch.add_on_cancel_callback(self.cancelled.append)
        args = dict(arguments or {})
        if offset is not None:
            args["x-stream-offset"] = offset
        extra = {"consumer_tag": tag} if tag else {}
        self.tag = self.ch.basic_consume(queue, self._on_message, arguments=args, **extra)

    def _on_message(self, ch, method, props, body):
        self.got.append((offset_of(props), body, method, props))
        if self.ack:
            ch.basic_ack(method.delivery_tag)

    @property
    def offsets(self):
        return [g[0] for g in self.got]

    @property
    def bodies(self):
        return [g[1] for g in self.got]

    def wait_for(self, n, what=None):
        wait_until(self.conn, lambda: len(self.got) >= n, what=what or f"{n} deliveries (have {len(self.got)})")

    def settle(self, seconds=0.3):
        settle(self.conn, seconds)

    def read(self, n):
        """Wait for n deliveries and check that no more follow; returns the bodies."""
        self.wait_for(n)
        self.settle()
        assert len(self.got) == n, f"expected {n} deliveries, got {len(self.got)}: {self.bodies}"
        return self.bodies


def offset_of(props):
    off = (props.headers or {}).get("x-stream-offset")
    # pika decodes the 64-bit field types (l/L) as pika.compat.long, 32-bit ones as int.
    assert isinstance(off, pika.compat.long), f"x-stream-offset should be a 64-bit integer, got {off!r}"
    return int(off)


# -- declaring ------------------------------------------------------------------


def test_declare_a_durable_stream(amqp):
    ch = amqp.connect().channel()
    q = stream(amqp, ch)
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.queue == q
    ok = ch.queue_declare(q, durable=True, arguments=STREAM)  # same again: fine
    assert ok.method.queue == q


@pytest.mark.parametrize(
    "flags, prop",
    [
        ({"durable": True, "auto_delete": True}, "auto-delete"),
        ({"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"durable": False}, "non-durable"),
        # checked in this order: auto-delete, exclusive, durable
        ({"durable": False, "auto_delete": True, "exclusive": True}, "auto-delete"),
        ({"durable": False, "exclusive": True}, "exclusive-owner"),
    ],
    ids=["auto_delete", "exclusive", "non-durable", "all-three", "exclusive-non-durable"],
)
def test_declare_with_a_forbidden_flag_is_refused(amqp, flags, prop):
    ch = amqp.connect().channel()
    q = amqp.track_queue(amqp.name("stream"))
    text = expect_channel_error(406, ch.queue_declare, q, arguments=STREAM, **flags)
    assert text == f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{q}' in vhost '/'"


@pytest.mark.parametrize("durable", [True, False])
def test_server_named_stream_is_refused(amqp, durable):
    ch = amqp.connect().channel()
    text = expect_channel_error(406, ch.queue_declare, "", durable=durable, arguments=STREAM)
    assert text == "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue"


OTHER_TYPES_ARGUMENTS = [
    ("x-max-length", 10),
    ("x-message-ttl", 1000),
    ("x-overflow", "reject-publish"),
    ("x-dead-letter-exchange", "dlx"),
    ("x-dead-letter-routing-key", "k"),
    ("x-max-priority", 5),
    ("x-single-active-consumer", True),
    ("x-expires", 10000),
    ("x-delivery-limit", 3),
    ("x-queue-mode", "lazy"),
    ("x-queue-master-locator", "min-masters"),
    ("x-quorum-initial-group-size", 3),
]


@pytest.mark.parametrize("arg, value", OTHER_TYPES_ARGUMENTS, ids=[a for a, _ in OTHER_TYPES_ARGUMENTS])
def test_argument_of_another_queue_type_is_refused(amqp, arg, value):
    ch = amqp.connect().channel()
    q = amqp.track_queue(amqp.name("stream"))
    text = expect_channel_error(406, ch.queue_declare, q, durable=True, arguments={**STREAM, arg: value})
    assert text == f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/' of queue type rabbit_stream_queue"


INVALID_STREAM_ARGUMENTS = [
    # x-max-age: digits (at least 1) then a case-sensitive unit Y M D h m s
    ("x-max-age", "7d", "invalid_max_age"),
    ("x-max-age", "1A", "invalid_max_age"),
    ("x-max-age", "0D", "invalid_max_age"),
    ("x-max-age", "1.5h", "invalid_max_age"),
    ("x-max-age", 7, "{unacceptable_type,signedint}"),
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", "big", '"expected integer, got longstr"'),
    ("x-stream-max-segment-size-bytes", "x", '"expected integer, got longstr"'),
    ("x-initial-cluster-size", 0, "{value_zero,0}"),
    ("x-queue-leader-locator", "nope", "invalid_queue_locator_arg"),
]


@pytest.mark.parametrize(
    "arg, value, detail", INVALID_STREAM_ARGUMENTS, ids=[f"{a}={v!r}" for a, v, _ in INVALID_STREAM_ARGUMENTS]
)
def test_invalid_stream_argument_is_refused(amqp, arg, value, detail):
    ch = amqp.connect().channel()
    q = amqp.track_queue(amqp.name("stream"))
    text = expect_channel_error(406, ch.queue_declare, q, durable=True, arguments={**STREAM, arg: value})
    assert text == f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {detail}"


def test_segment_size_above_the_maximum_is_refused(amqp):
    ch = amqp.connect().channel()
    q = amqp.track_queue(amqp.name("stream"))
    args = {**STREAM, "x-stream-max-segment-size-bytes": 3_000_000_001}
    text = expect_channel_error(406, ch.queue_declare, q, durable=True, arguments=args)
    assert text == "PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes"


@pytest.mark.parametrize("value", ["D", "h", ""])
def test_max_age_without_digits(amqp, server_product, value):
    """RabbitMQ (3.10 to 3.13 at least) crashes parsing an x-max-age without
    digits (list_to_integer("")) and closes the connection with 541
    INTERNAL_ERROR; Warren refuses it like any other bad x-max-age (406).
    A deliberate difference."""
    conn = amqp.connect()
    q = amqp.track_queue(amqp.name("stream"))
    args = {**STREAM, "x-max-age": value}
    if server_product == "Warren":
        text = expect_channel_error(406, conn.channel().queue_declare, q, durable=True, arguments=args)
        assert text == f"PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '{q}' in vhost '/': invalid_max_age"
    else:
        text = expect_connection_error(conn, 541, conn.channel().queue_declare, q, durable=True, arguments=args)
        assert text == "INTERNAL_ERROR"


GOOD_ARGUMENTS = [
    {"x-max-length-bytes": 1_000_000},
    {"x-max-length-bytes": 20_000_000_000},  # sent as a long (l)
    {"x-max-age": "7D"},
    {"x-max-age": "12h"},
    {"x-max-age": "30m"},
    {"x-max-age": "10s"},
    {"x-max-age": "2M"},
    {"x-max-age": "1Y"},
    {"x-stream-max-segment-size-bytes": 1000},
    {"x-stream-max-segment-size-bytes": 3_000_000_000},
    {"x-initial-cluster-size": 1},
    {"x-initial-cluster-size": 3},  # more replicas than nodes: fine
    {"x-queue-leader-locator": "client-local"},
    {"x-queue-leader-locator": "balanced"},
    {"x-stream-filter-size-bytes": 16},  # 3.13's Bloom filter size; 3.10 ignores it
    {"x-custom-unknown": "ignored"},
    {"x-max-age": "1D", "x-max-length-bytes": 5_000_000, "x-stream-max-segment-size-bytes": 1_000_000},
]


@pytest.mark.parametrize("arguments", GOOD_ARGUMENTS, ids=[repr(a) for a in GOOD_ARGUMENTS])
def test_stream_arguments_are_accepted(amqp, arguments):
    ch = amqp.connect().channel()
    q = stream(amqp, ch, **arguments)
    ch.queue_declare(q, durable=True, arguments={**STREAM, **arguments})  # equivalent redeclare


def test_redeclare_must_be_equivalent(amqp):
    conn = amqp.connect()
    args = {**STREAM, "x-max-age": "7D", "x-max-length-bytes": 1_000_000}
    q = amqp.queue(conn.channel(), durable=True, arguments=args)
    conn.channel().queue_declare(q, durable=True, arguments=args)
    conn.channel().queue_declare(q, passive=True)

    def refused(code=406, **kwargs):
        return expect_channel_error(code, conn.channel().queue_declare, q, **kwargs)

    prefix = "PRECONDITION_FAILED - inequivalent arg"
    assert refused(durable=True, arguments={**args, "x-max-age": "8D"}) == (
        f"{prefix} 'x-max-age' for queue '{q}' in vhost '/': received '8D' but current is '7D'"
    )
    assert refused(durable=True, arguments={**args, "x-max-length-bytes": 5}) == (
        f"{prefix} 'x-max-length-bytes' for queue '{q}' in vhost '/': received '5' but current is '1000000'"
    )
    assert refused(durable=True, arguments={**STREAM, "x-max-length-bytes": 1_000_000}) == (
        f"{prefix} 'x-max-age' for queue '{q}' in vhost '/': received none but current is the value '7D' of type 'longstr'"
    )
    assert refused(durable=True, arguments={**args, "x-stream-max-segment-size-bytes": 1000}) == (
        f"{prefix} 'x-stream-max-segment-size-bytes' for queue '{q}' in vhost '/': "
        "received the value '1000' of type 'signedint' but current is none"
    )
    # RabbitMQ compares x-max-length-bytes before x-queue-type: without arguments that one is reported
    assert refused(durable=True) == (
        f"{prefix} 'x-max-length-bytes' for queue '{q}' in vhost '/': "
        "received none but current is the value '1000000' of type 'signedint'"
    )
    # flags: an ordinary inequivalence (not the "invalid property" of a first declare)
    assert refused(durable=False, arguments=args) == (
        f"{prefix} 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"
    )
    assert refused(durable=True, auto_delete=True, arguments=args) == (
        f"{prefix} 'auto_delete' for queue '{q}' in vhost '/': received 'true' but current is 'false'"
    )
    text = refused(405, durable=True, exclusive=True, arguments=args)
    assert text.startswith(f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'"), text


def test_redeclare_with_another_queue_type_is_refused(amqp):
    conn = amqp.connect()
    q = stream(amqp, conn.channel())
    prefix = f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost '/'"
    text = expect_channel_error(406, conn.channel().queue_declare, q, durable=True)
    assert text == f"{prefix}: received none but current is the value 'stream' of type 'longstr'"
    for other in ("classic", "quorum"):
        text = expect_channel_error(406, conn.channel().queue_declare, q, durable=True, arguments={"x-queue-type": other})
        assert text == f"{prefix}: received '{other}' but current is 'stream'"

    classic = amqp.queue(conn.channel(), durable=True)
    text = expect_channel_error(406, conn.channel().queue_declare, classic, durable=True, arguments=STREAM)
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{classic}' in vhost '/': "
        "received the value 'stream' of type 'longstr' but current is none"
    )


def test_redeclare_ignores_arguments_streams_do_not_compare(amqp):
    """Redeclaring an existing stream only compares the stream's own arguments:
    another queue type's argument is neither validated nor compared then."""
    ch = amqp.connect().channel()
    q = stream(amqp, ch)
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-length": 5, "x-message-ttl": 5})
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-custom-unknown": 1})


# -- consuming: what is refused ----------------------------------------------------


def test_consume_without_consumer_prefetch_is_refused(amqp):
    conn = amqp.connect()
    q = stream(amqp, conn.channel())
    ch = conn.channel()
    text = expect_channel_error(406, ch.basic_consume, q, lambda *a: None)
    # sic: RabbitMQ 3.10 puts the queue's own quotes inside quotes
    expected = f"PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{q}' in vhost '/''"
    assert text == expected
    ch = conn.channel()  # a global prefetch alone does not count
    ch.basic_qos(prefetch_count=10, global_qos=True)
    assert expect_channel_error(406, ch.basic_consume, q, lambda *a: None) == expected


def test_consume_with_automatic_ack_closes_the_connection(amqp):
    q = stream(amqp, amqp.connect().channel())
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    text = expect_connection_error(conn, 540, ch.basic_consume, q, lambda *a: None, auto_ack=True)
    assert text == f"NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue '{q}' in vhost '/'"


@pytest.mark.parametrize("auto_ack", [False, True])
def test_basic_get_closes_the_connection(amqp, auto_ack):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, [b"m"])
    conn = amqp.connect()
    text = expect_connection_error(conn, 540, conn.channel().basic_get, q, auto_ack=auto_ack)
    assert text == f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'"


def test_purge_closes_the_connection(amqp):
    q = stream(amqp, amqp.connect().channel())
    conn = amqp.connect()
    text = expect_connection_error(conn, 540, conn.channel().queue_purge, q)
    assert text == f"NOT_IMPLEMENTED - queue.purge not supported by stream queues queue '{q}' in vhost '/'"


def test_global_qos_with_a_consumer_prefetch_closes_the_connection(amqp):
    q = stream(amqp, amqp.connect().channel())
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    ch.basic_qos(prefetch_count=5, global_qos=True)
    text = expect_connection_error(conn, 540, ch.basic_consume, q, lambda *a: None)
    assert text == f"NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos"


def test_consumer_prefetch_set_after_global_qos_replaces_it(amqp):
    """basic.qos global=false lifts the channel's global limit (RabbitMQ's
    unlimit_prefetch, for every queue type), so this order consumes fine."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 3))
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5, global_qos=True)
    ch.basic_qos(prefetch_count=10)
    reader = Reader(amqp, q, offset="first", prefetch=None, ch=ch)
    assert reader.read(3) == numbered("m", 3)


@pytest.mark.parametrize("offset", ["7d", "0", "0h", "1.5h"])
def test_invalid_offset_string_is_refused(amqp, offset):
    conn = amqp.connect()
    q = stream(amqp, conn.channel())
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    text = expect_channel_error(406, ch.basic_consume, q, lambda *a: None, arguments={"x-stream-offset": offset})
    assert text == (
        f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{q}' in vhost '/': "
        f'{{invalid_stream_offset_arg,{{longstr,<<"{offset}">>}}}}'
    )


@pytest.mark.parametrize("offset", ["bogus", "FIRST", True, {"k": 1}, [1]], ids=["bogus", "FIRST", "bool", "table", "array"])
def test_offset_of_no_known_form(amqp, server_product, offset):
    """RabbitMQ 3.10 crashes (541 INTERNAL_ERROR, connection closed) on an
    x-stream-offset string that does not start with a digit and is not
    first/last/next, and on any value that is neither a string, an integer nor
    a timestamp. Warren refuses it with the usual 406 for a bad consumer
    argument. A deliberate difference."""
    conn = amqp.connect()
    q = stream(amqp, conn.channel())
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    consume = (ch.basic_consume, q, lambda *a: None)
    if server_product == "Warren":
        text = expect_channel_error(406, *consume, arguments={"x-stream-offset": offset})
        assert text.startswith(f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '{q}' in vhost '/'"), text
    else:
        text = expect_connection_error(conn, 541, *consume, arguments={"x-stream-offset": offset})
        assert text == "INTERNAL_ERROR"


@pytest.mark.parametrize("arg, value", [("x-priority", 5), ("x-cancel-on-ha-failover", True)])
def test_consumer_argument_of_another_queue_type_is_refused(amqp, arg, value):
    conn = amqp.connect()
    q = stream(amqp, conn.channel())
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    text = expect_channel_error(406, ch.basic_consume, q, lambda *a: None, arguments={arg: value})
    assert text == f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/' of queue type rabbit_stream_queue"


# -- x-stream-offset ---------------------------------------------------------------


def test_first_reads_everything_in_order_with_offsets_in_a_header(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    for i in range(10):
        headers = {"app": "v", "n": i, "flag": i % 2 == 0}
        pub.basic_publish("", q, f"m{i}".encode(), properties=pika.BasicProperties(headers=headers))

    reader = Reader(amqp, q, offset="first")
    assert reader.read(10) == numbered("m", 10)
    assert reader.offsets == list(range(10))
    for i, (offset, _body, method, props) in enumerate(reader.got):
        assert props.headers == {"app": "v", "n": i, "flag": i % 2 == 0, "x-stream-offset": offset}
        assert method.redelivered is False
        assert method.routing_key == q


def test_next_and_no_offset_read_only_messages_published_after_attaching(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("old", 3))
    readers = [Reader(amqp, q, offset="next"), Reader(amqp, q)]  # no x-stream-offset: "next" too
    for r in readers:
        r.settle()
        assert r.got == []
    publish(pub, q, numbered("new", 2))
    for r in readers:
        assert r.read(2) == numbered("new", 2)
        assert r.offsets == [3, 4]


def test_integer_offset_starts_there(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 10))
    reader = Reader(amqp, q, offset=4)
    assert reader.read(6) == numbered("m", 6, start=4)
    assert reader.offsets == list(range(4, 10))
    # a 64-bit integer works the same
    reader = Reader(amqp, q, offset=pika.compat.long(7))
    assert reader.read(3) == numbered("m", 3, start=7)
    # below the start clamps to the first message
    reader = Reader(amqp, q, offset=-1)
    assert reader.read(10) == numbered("m", 10)


def test_timestamp_and_interval_offsets(amqp):
    """A timestamp (AMQP 'T', seconds; pika sends a datetime as one) attaches
    near that time: everything published from then on, nothing published more
    than ~1 s before it. An interval string ("1h", "1s") means now minus it."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("a", 5))
    time.sleep(2.2)
    # 'T' has whole seconds: the cut is at most 1 s before now, so batch A is >= 1.2 s older than it
    cut = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    publish(pub, q, numbered("b", 5))

    assert Reader(amqp, q, offset=cut).read(5) == numbered("b", 5)
    assert Reader(amqp, q, offset="1s").read(5) == numbered("b", 5)
    assert Reader(amqp, q, offset="1h").read(10) == numbered("a", 5) + numbered("b", 5)
    # clamped at both ends
    assert Reader(amqp, q, offset=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)).read(10) == (
        numbered("a", 5) + numbered("b", 5)
    )
    future = Reader(amqp, q, offset=datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc))
    future.settle()
    assert future.got == []


def test_last_starts_within_the_last_batch(amqp):
    """"last" is the start of the last chunk (a write batch) on RabbitMQ, so
    how many messages come first depends on batching (RabbitMQ 3.10 gave just
    the last one here, each publish being confirmed before the next). Only
    assert: in order, ending with the last one published, then live."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    sent = numbered("m", 20)
    publish(pub, q, sent)
    reader = Reader(amqp, q, offset="last")
    reader.wait_for(1)
    reader.settle()
    n = len(reader.got)
    assert 1 <= n <= len(sent)
    assert reader.bodies == sent[-n:]
    assert reader.offsets == list(range(20 - n, 20))
    publish(pub, q, [b"live"])
    reader.wait_for(n + 1)
    assert reader.got[-1][:2] == (20, b"live")


def test_properties_and_large_bodies_round_trip(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    props = pika.BasicProperties(
        content_type="text/plain",
        content_encoding="identity",
        headers={"s": "v", "i": 7, "neg": -3, "big": 2**40, "b": True, "bytes": b"\x00\xff"},
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=3,
        correlation_id="corr-1",
        reply_to="interop.py.reply",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="t",
        user_id="guest",
        app_id="interop.py",
    )
    bodies = [b"x" * 300_000, b"", bytes(range(256))]  # 300 kB: several frames
    for body in bodies:
        pub.basic_publish("", q, body, properties=props)
    reader = Reader(amqp, q, offset="first")
    assert reader.read(3) == bodies
    for i, (_off, _body, _method, got) in enumerate(reader.got):
        assert got.headers == {**props.headers, "x-stream-offset": i}
        others = {k: v for k, v in vars(got).items() if k != "headers"}
        assert others == {k: v for k, v in vars(props).items() if k != "headers"}


# -- acks, credit, several consumers ----------------------------------------------


def test_acks_only_return_credit(amqp):
    """Credit is counted per message here because each message is published
    (and confirmed) on its own: RabbitMQ hands a stream consumer whole chunks
    (write batches) while it has credit, so a burst written as one chunk
    arrives whole whatever the prefetch (25 of 25 with prefetch 10, measured).
    Warren counts credit per message; publishing one at a time makes both agree."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 25))
    reader = Reader(amqp, q, offset="first", prefetch=10, ack=False)
    reader.wait_for(10)
    reader.settle()
    assert len(reader.got) == 10  # no more until something is acked
    reader.ch.basic_ack(reader.got[0][2].delivery_tag)
    reader.wait_for(11)
    reader.settle()
    assert len(reader.got) == 11
    reader.ch.basic_ack(reader.got[-1][2].delivery_tag, multiple=True)  # 10 more credits
    reader.wait_for(21)
    reader.settle()
    assert len(reader.got) == 21
    reader.ch.basic_ack(0, multiple=True)  # everything outstanding
    assert reader.read(25) == numbered("m", 25)
    assert reader.offsets == list(range(25))
    # acking removed nothing
    assert Reader(amqp, q, offset="first").read(25) == numbered("m", 25)


def test_nack_and_reject_never_redeliver(amqp):
    """RabbitMQ 3.x refuses basic.nack / basic.reject on a stream consumer's
    deliveries with 540 (connection closed), whatever the requeue flag.
    RabbitMQ 4 and Warren take them as settlement: one credit back per message,
    no redelivery, nothing removed from the stream."""
    pub_conn = amqp.connect()
    pub = confirm_channel(amqp, pub_conn)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 15))
    reader = Reader(amqp, q, offset="first", prefetch=5, ack=False)
    reader.wait_for(5)
    first = reader.got[0][2].delivery_tag

    if is_rabbitmq_3(pub_conn):
        text = expect_connection_error(reader.conn, 540, reader.ch.basic_nack, first, requeue=True)
        assert text == f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue '{q}' in vhost '/'"
        reader = Reader(amqp, q, offset="first", prefetch=5, ack=False)
        reader.wait_for(5)
        text = expect_connection_error(reader.conn, 540, reader.ch.basic_reject, reader.got[1][2].delivery_tag, requeue=False)
        assert text.startswith("NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues"), text
    else:
        reader.ch.basic_nack(first, requeue=True)
        reader.ch.basic_reject(reader.got[1][2].delivery_tag, requeue=True)
        reader.ch.basic_nack(reader.got[4][2].delivery_tag, multiple=True, requeue=False)  # 2, 3, 4
        reader.wait_for(10)
        reader.settle()
        assert len(reader.got) == 10, "one credit back per settled message"
        reader.ch.basic_reject(reader.got[9][2].delivery_tag, requeue=True)
        reader.ch.basic_nack(0, multiple=True, requeue=True)  # 5..8
        assert reader.read(15) == numbered("m", 15)  # never a redelivery
        assert all(method.redelivered is False for _o, _b, method, _p in reader.got)
        assert reader.ch.is_open

    # Nothing was removed: a new consumer from "first" sees every message.
    assert Reader(amqp, q, offset="first").read(15) == numbered("m", 15)


def test_independent_consumers_each_read_the_whole_stream(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 10))
    shared = amqp.connect()
    readers = [
        Reader(amqp, q, offset="first", conn=shared),
        Reader(amqp, q, offset="first", conn=shared, prefetch=3),  # another channel, same connection
        Reader(amqp, q, offset="first"),  # another connection
        Reader(amqp, q, offset=5),
    ]
    publish(pub, q, numbered("m", 2, start=10))
    for r in readers[:3]:
        assert r.read(12) == numbered("m", 12)
        assert r.offsets == list(range(12))
    assert readers[3].read(7) == numbered("m", 7, start=5)


def test_two_consumers_on_one_channel(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 6))
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=4)
    got = {"a": [], "b": []}
    for key, offset in (("a", "first"), ("b", 3)):
        ch.basic_consume(
            q,
            lambda c, m, p, body, key=key: (got[key].append(body), c.basic_ack(m.delivery_tag)),
            arguments={"x-stream-offset": offset},
        )
    wait_until(conn, lambda: len(got["a"]) == 6 and len(got["b"]) == 3, what="both consumers")
    settle(conn)
    assert got == {"a": numbered("m", 6), "b": numbered("m", 3, start=3)}


def test_publisher_confirms_and_routing_through_an_exchange(amqp):
    conn = amqp.connect()
    pub = confirm_channel(amqp, conn)
    q = stream(amqp, pub)
    x = amqp.exchange(pub, "direct")
    pub.queue_bind(q, x, routing_key="k")
    returned = []
    pub.add_on_return_callback(lambda *a: returned.append(a))
    # BlockingChannel in confirm mode raises NackError / UnroutableError if one is not acked
    for i in range(200):
        pub.basic_publish(x, "k", f"m{i}".encode(), mandatory=True)
    settle(conn, 0.1)
    assert returned == []
    assert Reader(amqp, q, offset="first", prefetch=50).read(200) == numbered("m", 200)


def test_deleting_the_stream_cancels_its_consumers(amqp):
    """The server sends basic.cancel (pika advertises consumer_cancel_notify);
    the channels stay open."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, [b"m"])
    readers = [Reader(amqp, q, offset="first"), Reader(amqp, q)]
    readers[0].wait_for(1)
    amqp.connect().channel().queue_delete(q)
    for r in readers:
        wait_until(r.conn, lambda r=r: len(r.cancelled) == 1, what="basic.cancel from the server")
        assert r.cancelled[0].method.consumer_tag == r.tag
        assert r.ch.is_open
        assert r.ch.consumer_tags == []


# -- retention -------------------------------------------------------------------------


def test_retention_by_size_drops_the_oldest_segments(amqp):
    """x-max-length-bytes is enforced per segment, when a segment rolls over:
    the oldest whole segments go, the one being written never does. With
    1000-byte segments and a 5000-byte limit, RabbitMQ 3.10.8 kept the last
    16-17 of 105 100-byte messages (4-5 messages a segment: ~230 bytes each on
    disk with the AMQP 1.0 encoding and chunk headers). Its offsets also skip
    one at every new segment (a tracking chunk), so only increasing offsets
    are asserted here."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub, **{"x-stream-max-segment-size-bytes": 1000, "x-max-length-bytes": 5000})
    sent = [b"%03d" % i + b"x" * 97 for i in range(120)]
    publish(pub, q, sent[:100])
    publish(pub, q, sent[100:])  # more roll-overs after the limit was passed
    reader = Reader(amqp, q, offset="first", prefetch=200)
    reader.wait_for(1)
    reader.settle(0.5)
    got = reader.bodies
    assert 5 <= len(got) < len(sent), len(got)
    assert got == sent[-len(got) :], "what is kept is the newest messages, in order, without gaps"
    assert sum(len(b) for b in got) <= 5000 + 1000, "at most the limit plus one segment of bodies"
    assert reader.offsets[0] > 0
    assert reader.offsets == sorted(set(reader.offsets))


def test_retention_by_age_drops_old_segments(amqp):
    """x-max-age="1s": after 2 s and a few roll-overs the old messages are
    gone. (With the default 500 MB segment nothing would go: the segment being
    written is never deleted.)"""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub, **{"x-stream-max-segment-size-bytes": 1000, "x-max-age": "1s"})
    old = [b"a%03d" % i + b"x" * 96 for i in range(20)]
    new = [b"b%03d" % i + b"x" * 96 for i in range(20)]
    publish(pub, q, old)
    time.sleep(2)
    publish(pub, q, new)
    reader = Reader(amqp, q, offset="first", prefetch=100)
    reader.wait_for(len(new))
    reader.settle(0.5)
    got = reader.bodies
    assert got[-len(new) :] == new, "every recent message is kept"
    kept_old = got[: -len(new)]
    assert kept_old == old[len(old) - len(kept_old) :]
    assert len(kept_old) <= 10, f"at most one 1000-byte segment of old messages may remain, kept {len(kept_old)}"
    assert reader.offsets[0] > 0


# -- Warren-only: filtering per message, server-side offset tracking -------------------
# The names are RabbitMQ 3.13's (docs: stream-filtering; rabbit_stream_queue.erl):
# publisher header x-stream-filter-value (a string), consumer arguments
# x-stream-filter (a string or an array of strings, ORed) and
# x-stream-match-unfiltered (a bool). RabbitMQ filters per chunk with a Bloom
# filter and the client filters again; Warren filters exactly per message.
# Offset tracking over AMQP 0-9-1 is not in RabbitMQ (stream protocol only);
# the argument name x-stream-automatic-offset-tracking is LavinMQ's.


def filtered_stream(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    plan = ["eu", "us", None, "eu", "apac", None, "us", "eu"]
    for i, value in enumerate(plan):
        headers = {"x-stream-filter-value": value} if value else {"other": "h"}
        pub.basic_publish("", q, f"m{i}-{value}".encode(), properties=pika.BasicProperties(headers=headers))
    return pub, q, plan


def expected(plan, values, unfiltered=False):
    return [(i, f"m{i}-{v}".encode()) for i, v in enumerate(plan) if v in values or (unfiltered and v is None)]


@pytest.mark.warren_only
def test_filter_delivers_only_matching_messages(amqp):
    pub, q, plan = filtered_stream(amqp)
    eu = Reader(amqp, q, offset="first", arguments={"x-stream-filter": "eu"})
    eu_us = Reader(amqp, q, offset="first", arguments={"x-stream-filter": ["eu", "us"]})
    for reader, values in ((eu, {"eu"}), (eu_us, {"eu", "us"})):
        want = expected(plan, values)
        reader.read(len(want))
        assert [(o, b) for o, b, _m, _p in reader.got] == want
        for _o, _b, _m, props in reader.got:
            assert props.headers["x-stream-filter-value"] in values
    # live messages are filtered too
    pub.basic_publish("", q, b"live-us", properties=pika.BasicProperties(headers={"x-stream-filter-value": "us"}))
    pub.basic_publish("", q, b"live-eu", properties=pika.BasicProperties(headers={"x-stream-filter-value": "eu"}))
    eu.wait_for(4)
    eu.settle()
    assert eu.bodies[-1] == b"live-eu" and len(eu.got) == 4


@pytest.mark.warren_only
def test_filter_with_match_unfiltered_also_delivers_messages_without_a_value(amqp):
    _pub, q, plan = filtered_stream(amqp)
    args = {"x-stream-filter": "apac", "x-stream-match-unfiltered": True}
    reader = Reader(amqp, q, offset="first", arguments=args)
    want = expected(plan, {"apac"}, unfiltered=True)
    reader.read(len(want))
    assert [(o, b) for o, b, _m, _p in reader.got] == want
    # without the flag, the messages without a value are not delivered
    reader = Reader(amqp, q, offset="first", arguments={"x-stream-filter": "apac"})
    assert reader.read(1) == [b"m4-apac"]


@pytest.mark.warren_only
def test_filter_credit_counts_delivered_messages_only(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    for i in range(30):
        value = "hit" if i % 3 == 0 else "miss"
        pub.basic_publish("", q, f"m{i}".encode(), properties=pika.BasicProperties(headers={"x-stream-filter-value": value}))
    reader = Reader(amqp, q, offset="first", prefetch=2, arguments={"x-stream-filter": "hit"})
    assert reader.read(10) == [f"m{i}".encode() for i in range(0, 30, 3)]
    assert reader.offsets == list(range(0, 30, 3))


TRACKING = {"x-stream-automatic-offset-tracking": True}


@pytest.mark.warren_only
def test_offset_tracking_resumes_after_the_last_ack_for_the_same_tag(amqp):
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 10))
    tag = amqp.name("tracker")
    reader = Reader(amqp, q, offset="first", arguments=TRACKING, tag=tag, ack=False)
    reader.read(10)
    k = 5
    reader.ch.basic_ack(reader.got[k][2].delivery_tag, multiple=True)  # offsets 0..5 acked
    reader.ch.basic_cancel(tag)  # cancel-ok comes after the ack was handled

    resumed = Reader(amqp, q, arguments=TRACKING, tag=tag)  # no x-stream-offset
    assert resumed.read(10 - k - 1) == numbered("m", 4, start=k + 1)
    assert resumed.offsets == list(range(k + 1, 10))
    resumed.ch.basic_cancel(tag)  # all acked now: a third attach gets only new messages
    again = Reader(amqp, q, arguments=TRACKING, tag=tag)
    again.settle()
    assert again.got == []
    publish(pub, q, [b"new"])
    assert again.read(1) == [b"new"]
    assert again.offsets == [10]

    # Another tag has no tracked offset: it does not resume at k+1
    other = Reader(amqp, q, arguments=TRACKING, tag=amqp.name("tracker"))
    publish(pub, q, [b"newer"])
    other.wait_for(1)
    assert other.offsets[0] != k + 1


@pytest.mark.warren_only
def test_tracked_offset_wins_over_an_explicit_one(amqp):
    """As LavinMQ (and Kafka's committed offsets): once a name has a tracked
    offset it resumes there; x-stream-offset only places a name seen first."""
    pub = confirm_channel(amqp)
    q = stream(amqp, pub)
    publish(pub, q, numbered("m", 6))
    tag = amqp.name("tracker")
    reader = Reader(amqp, q, offset="first", arguments=TRACKING, tag=tag)
    reader.read(6)
    reader.ch.basic_cancel(tag)
    publish(pub, q, [b"later"])
    again = Reader(amqp, q, offset="first", arguments=TRACKING, tag=tag)
    assert again.read(1) == [b"later"]
