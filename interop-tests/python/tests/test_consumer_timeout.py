"""Per-queue consumer (acknowledgement) timeout, x-consumer-timeout (ms).
Warren-only: RabbitMQ 3.10 only has the node-wide consumer_timeout setting
(default 30 min) and ignores this queue argument; newer RabbitMQ versions read
it (rabbit_channel.erl, get_queue_consumer_timeout).

When a delivery on a channel stays unacknowledged longer than the timeout the
channel is closed with RabbitMQ's text (rabbit_channel.erl,
handle_consumer_timed_out):

  406 PRECONDITION_FAILED - delivery acknowledgement on channel N timed out.
  Timeout value used: T ms. This timeout value can be configured, see
  consumers doc guide to learn more

and, as with any channel close, its unacked messages are requeued. This
applies to basic.get deliveries that need an ack as well."""

import pytest

from helpers import get_one, wait_channel_closed, wait_until
from lifecycle import pump

pytestmark = pytest.mark.warren_only

TIMEOUT_MS = 500


def expected_text(channel_number):
    return (
        f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel_number} timed out. "
        f"Timeout value used: {TIMEOUT_MS} ms. "
        "This timeout value can be configured, see consumers doc guide to learn more"
    )


def test_unacked_delivery_closes_the_channel_and_is_requeued(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, arguments={"x-consumer-timeout": TIMEOUT_MS})
    ch.basic_publish("", q, b"slow")

    conn = amqp.connect()
    consumer = conn.channel()
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b))  # never acks
    wait_until(conn, lambda: got, what="the delivery")
    text = wait_channel_closed(consumer, 406)
    assert text == expected_text(consumer.channel_number)
    assert conn.is_open  # only the channel is closed

    method, _, body = get_one(ch, q)
    assert (body, method.redelivered) == (b"slow", True)


def test_timeout_applies_to_basic_get_with_manual_ack(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, arguments={"x-consumer-timeout": TIMEOUT_MS})
    ch.basic_publish("", q, b"got")
    conn = amqp.connect()
    getter = conn.channel()
    get_one(getter, q, auto_ack=False)
    text = wait_channel_closed(getter, 406)
    assert text == expected_text(getter.channel_number)
    method, _, body = get_one(ch, q)
    assert (body, method.redelivered) == (b"got", True)


def test_prompt_acks_keep_the_channel_open(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, arguments={"x-consumer-timeout": TIMEOUT_MS})
    conn = amqp.connect()
    consumer = conn.channel()
    got = []

    def on_message(c, method, props, body):
        got.append(body)
        c.basic_ack(method.delivery_tag)

    consumer.basic_consume(q, on_message)
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode())
        pump([conn], 0.4)
    pump([conn], 1.5)  # three timeouts' worth with nothing unacked
    assert consumer.is_open
    assert got == [b"m0", b"m1", b"m2"]


def test_auto_ack_consumers_are_not_affected(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, arguments={"x-consumer-timeout": TIMEOUT_MS})
    conn = amqp.connect()
    consumer = conn.channel()
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"fire and forget")
    pump([conn], 1.5)
    assert consumer.is_open and got == [b"fire and forget"]
