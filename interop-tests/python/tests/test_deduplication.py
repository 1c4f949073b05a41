"""Message deduplication, Warren-only (RabbitMQ needs the third-party
rabbitmq-message-deduplication plugin). Semantics follow that plugin's README
(github.com/noxdafox/rabbitmq-message-deduplication):

Queue level: a queue declared with x-message-deduplication = true does not
enqueue a message whose x-deduplication-header value equals that of a message
already in the queue. "In the queue" includes delivered-but-unacked messages
(and requeued ones); the value is forgotten when the message is acked,
auto-acked, dropped or purged. Messages without the header are never
deduplicated. A duplicate is dropped silently: the publisher still gets
basic.ack.

Exchange level: exchange type x-message-deduplication routes like fanout and
drops a message whose x-deduplication-header value it has seen before.
x-cache-size (required, > 0) bounds the remembered values (a full cache
forgets old entries); x-cache-ttl (optional, ms) forgets a value after that
long (a duplicate does not extend it), and an x-cache-ttl message header
overrides it per message."""

import time

import pika
import pytest

from helpers import drain, expect_channel_error, get_one
from lifecycle import depth

pytestmark = pytest.mark.warren_only


@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def dedup(value, **more):
    return pika.BasicProperties(headers={"x-deduplication-header": value, **more})


def dedup_queue(amqp, ch):
    return amqp.queue(ch, arguments={"x-message-deduplication": True})


def test_queue_drops_a_duplicate_of_a_queued_message(amqp, ch):
    q = dedup_queue(amqp, ch)
    ch.basic_publish("", q, b"first", properties=dedup("order-1"))
    ch.basic_publish("", q, b"second", properties=dedup("order-1"))  # acked, but dropped
    ch.basic_publish("", q, b"other", properties=dedup("order-2"))
    ch.basic_publish("", q, b"plain")
    ch.basic_publish("", q, b"plain")  # no header: never a duplicate
    assert drain(ch, q) == [b"first", b"other", b"plain", b"plain"]


def test_queue_forgets_the_value_once_the_message_is_acked(amqp, ch):
    q = dedup_queue(amqp, ch)
    ch.basic_publish("", q, b"v1", properties=dedup("k"))
    method, _, _ = get_one(ch, q, auto_ack=False)
    ch.basic_publish("", q, b"while unacked", properties=dedup("k"))
    assert depth(ch, q) == 0  # still a duplicate: the first one is unacked
    ch.basic_nack(method.delivery_tag, requeue=True)
    ch.basic_publish("", q, b"after requeue", properties=dedup("k"))
    assert depth(ch, q) == 1
    method, _, body = get_one(ch, q, auto_ack=False)
    assert body == b"v1"
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", q, b"v2", properties=dedup("k"))
    assert drain(ch, q) == [b"v2"]  # auto-ack forgets it too
    ch.basic_publish("", q, b"v3", properties=dedup("k"))
    assert drain(ch, q) == [b"v3"]


def test_queue_forgets_values_on_purge(amqp, ch):
    q = dedup_queue(amqp, ch)
    ch.basic_publish("", q, b"a", properties=dedup("k"))
    ch.queue_purge(q)
    ch.basic_publish("", q, b"b", properties=dedup("k"))
    assert drain(ch, q) == [b"b"]


def test_queue_without_the_argument_keeps_duplicates(amqp, ch):
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"a", properties=dedup("k"))
    ch.basic_publish("", q, b"b", properties=dedup("k"))
    assert drain(ch, q) == [b"a", b"b"]


def dedup_exchange(amqp, ch, **arguments):
    return amqp.exchange(ch, "x-message-deduplication", arguments=arguments)


def test_exchange_routes_like_fanout_and_drops_duplicates(amqp, ch):
    x = dedup_exchange(amqp, ch, **{"x-cache-size": 100})
    q1, q2 = amqp.queue(ch), amqp.queue(ch)
    ch.queue_bind(q1, x, routing_key="one")
    ch.queue_bind(q2, x, routing_key="two")
    ch.basic_publish(x, "anything", b"a1", properties=dedup("a"))
    ch.basic_publish(x, "anything", b"a2", properties=dedup("a"))
    ch.basic_publish(x, "anything", b"b1", properties=dedup("b"))
    ch.basic_publish(x, "anything", b"n1")
    ch.basic_publish(x, "anything", b"n2")
    for q in (q1, q2):
        assert drain(ch, q) == [b"a1", b"b1", b"n1", b"n2"], q


def test_exchange_remembers_values_after_the_message_is_consumed(amqp, ch):
    x = dedup_exchange(amqp, ch, **{"x-cache-size": 100})
    q = amqp.queue(ch)
    ch.queue_bind(q, x)
    ch.basic_publish(x, "", b"a1", properties=dedup("a"))
    assert drain(ch, q) == [b"a1"]
    ch.basic_publish(x, "", b"a2", properties=dedup("a"))
    assert drain(ch, q) == []


def test_exchange_cache_size_evicts_old_values(amqp, ch):
    x = dedup_exchange(amqp, ch, **{"x-cache-size": 1})
    q = amqp.queue(ch)
    ch.queue_bind(q, x)
    for body, value in ((b"a1", "a"), (b"b1", "b"), (b"a2", "a")):
        ch.basic_publish(x, "", body, properties=dedup(value))
    assert drain(ch, q) == [b"a1", b"b1", b"a2"]  # "b" pushed "a" out


def publish_until_routed(ch, x, q, value, timeout=10.0, **headers):
    """Publish the same value every 50 ms until one copy is routed; returns
    the seconds it took."""
    t0 = time.monotonic()
    while True:
        ch.basic_publish(x, "", b"again", properties=dedup(value, **headers))
        if depth(ch, q):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{value!r} still a duplicate after {timeout}s")
        ch.connection.sleep(0.05)


def test_exchange_cache_ttl_forgets_values(amqp, ch):
    x = dedup_exchange(amqp, ch, **{"x-cache-size": 100, "x-cache-ttl": 300})
    q = amqp.queue(ch)
    ch.queue_bind(q, x)
    ch.basic_publish(x, "", b"first", properties=dedup("a"))
    assert drain(ch, q) == [b"first"]
    waited = publish_until_routed(ch, x, q, "a")
    assert waited >= 0.2  # not before (about) the TTL


def test_message_x_cache_ttl_header_overrides_the_exchange_ttl(amqp, ch):
    x = dedup_exchange(amqp, ch, **{"x-cache-size": 100, "x-cache-ttl": 60000})
    q = amqp.queue(ch)
    ch.queue_bind(q, x)
    ch.basic_publish(x, "", b"first", properties=dedup("a", **{"x-cache-ttl": 300}))
    assert drain(ch, q) == [b"first"]
    publish_until_routed(ch, x, q, "a")  # well before the exchange's 60 s


@pytest.mark.parametrize(
    "arguments",
    [{}, {"x-cache-size": 0}, {"x-cache-size": -1}, {"x-cache-size": "lots"}],
    ids=["missing", "zero", "negative", "not-a-number"],
)
def test_exchange_requires_a_positive_cache_size(amqp, arguments):
    ch = amqp.connect().channel()
    text = expect_channel_error(
        406,
        ch.exchange_declare,
        exchange=amqp.name("x.dedup"),
        exchange_type="x-message-deduplication",
        arguments=arguments,
    )
    assert text == (
        "PRECONDITION_FAILED - Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"
    )


@pytest.mark.parametrize("ttl", [0, -5, "soon"], ids=["zero", "negative", "not-a-number"])
def test_exchange_cache_ttl_must_be_positive(amqp, ttl):
    ch = amqp.connect().channel()
    text = expect_channel_error(
        406,
        ch.exchange_declare,
        exchange=amqp.name("x.dedup"),
        exchange_type="x-message-deduplication",
        arguments={"x-cache-size": 10, "x-cache-ttl": ttl},
    )
    assert text == "PRECONDITION_FAILED - Invalid argument, 'x-cache-ttl' must be an integer greater than 0"
