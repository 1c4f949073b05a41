"""Message TTL: the x-message-ttl queue argument, the per-message `expiration`
property (a string of milliseconds), which of the two wins, TTL 0, and what a
malformed `expiration` does to the publishing channel.

RabbitMQ 3.10 drops (or dead-letters) an expired message when it reaches the
head of the queue; these tests only pin what a client can observe: expired
messages are never delivered and eventually leave the ready count."""

import pika
import pytest

from helpers import drain, get_one, wait_channel_closed
from lifecycle import depth, pump, pump_until, wait_depth



@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def dead_letter_sink(amqp, ch):
    """A fanout DLX with one queue bound; returns (exchange, queue)."""
    dlx = amqp.exchange(ch, "fanout")
    dlq = amqp.queue(ch)
    ch.queue_bind(dlq, dlx)
    return dlx, dlq


def test_queue_ttl_expires_messages(amqp, ch):
    q = amqp.queue(ch, arguments={"x-message-ttl": 1500})
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
    assert depth(ch, q) == 3  # not expired yet
    wait_depth(ch, q, 0)
    assert ch.basic_get(q, auto_ack=True)[0] is None


def test_per_message_expiration(amqp, ch):
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"short", properties=pika.BasicProperties(expiration="200"))
    ch.basic_publish("", q, b"forever")
    wait_depth(ch, q, 1)
    assert drain(ch, q) == [b"forever"]


def test_expired_message_behind_a_live_one_is_never_delivered(amqp, ch):
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b", properties=pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"c")
    ch.connection.sleep(0.5)
    assert drain(ch, q) == [b"a", b"c"]


def test_expiration_property_is_delivered_unchanged(amqp, ch):
    q = amqp.queue(ch, arguments={"x-message-ttl": 60000})
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration="60000"))
    _, props, _ = get_one(ch, q)
    assert props.expiration == "60000"  # not rewritten to the time left


@pytest.mark.parametrize(
    "queue_ttl, expiration",
    [(60000, "200"), (200, "60000")],
    ids=["message-ttl-lower", "queue-ttl-lower"],
)
def test_lower_of_queue_and_message_ttl_wins(amqp, ch, queue_ttl, expiration):
    # Whichever TTL is lower expires the message well within the wait; the
    # other one (60 s) would outlast it.
    dlx, dlq = dead_letter_sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-message-ttl": queue_ttl, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration=expiration))
    _, props, body = get_one(ch, dlq)
    assert body == b"x"
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == expiration
    assert depth(ch, q) == 0


def test_ttl_zero_without_consumer_expires_at_once(amqp, ch):
    dlx, dlq = dead_letter_sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"nobody home")
    _, props, body = get_one(ch, dlq)
    assert body == b"nobody home"
    assert props.headers["x-death"][0]["reason"] == "expired"
    assert depth(ch, q) == 0


def test_ttl_zero_is_delivered_to_a_ready_consumer(amqp, ch):
    dlx, dlq = dead_letter_sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    conn = amqp.connect()
    consumer = conn.channel()
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    pump([conn], 0.2)
    ch.basic_publish("", q, b"just in time")
    pump_until([conn], lambda: got, what="delivery of a TTL 0 message")
    assert got == [b"just in time"]
    pump([conn], 0.3)
    assert drain(ch, dlq) == []


def test_ttl_zero_expires_when_the_consumer_is_at_its_prefetch_limit(amqp, ch):
    dlx, dlq = dead_letter_sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    conn = amqp.connect()
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b))  # never acks
    pump([conn], 0.2)
    ch.basic_publish("", q, b"first")
    pump_until([conn], lambda: got, what="first delivery")
    ch.basic_publish("", q, b"second")
    _, _, body = get_one(ch, dlq)
    assert body == b"second"
    pump([conn], 0.2)
    assert got == [b"first"]


def test_per_message_expiration_zero(amqp, ch):
    dlx, dlq = dead_letter_sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"e0", properties=pika.BasicProperties(expiration="0"))
    _, props, body = get_one(ch, dlq)
    assert body == b"e0"
    assert props.expiration is None
    assert props.headers["x-death"][0]["original-expiration"] == "0"


# RabbitMQ parses `expiration` with Erlang's string:to_integer/1: an optional
# sign and digits, nothing else; at most 315360000000 ms (10 years).
@pytest.mark.parametrize(
    "expiration, reason",
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        (" 100", "no_integer"),
        ("1.5", '{leftover_string,".5"}'),
        ("100ms", '{leftover_string,"ms"}'),
        ("-1", "{value_negative,-1}"),
        ("315360000001", "{value_too_large,315360000001}"),
    ],
)
def test_invalid_expiration_closes_the_channel(amqp, expiration, reason):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration=expiration))
    text = wait_channel_closed(ch, 406)
    assert text == f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}"
    assert conn.is_open
    assert depth(conn.channel(), q) == 0  # the message was not enqueued


@pytest.mark.parametrize("expiration", ["0", "007", "+5", "-0", "315360000000"])
def test_unusual_but_valid_expirations_are_accepted(amqp, ch, expiration):
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration=expiration))
    assert ch.is_open  # confirmed, no channel error
