"""Delayed-message exchange, Warren-only (RabbitMQ needs the
rabbitmq_delayed_message_exchange plugin for this; without it, declaring the
type closes the connection with 503 "COMMAND_INVALID - unknown exchange type
'x-delayed-message'"). Semantics follow that plugin:

- exchange type "x-delayed-message"; the argument x-delayed-type names the
  exchange type used for routing (direct, fanout, topic, headers) and is
  required;
- a message with an integer x-delay header (ms, > 0) is routed when the delay
  is over (string values holding an integer work too); without the header, or
  with x-delay <= 0, it is routed at once;
- delayed messages are routed in due-time order, not publish order;
- the routed message carries x-delay = -delay, so a later delayed exchange
  does not delay it again."""

import time

import pika
import pytest

from helpers import drain, expect_channel_error
from lifecycle import pump, pump_until

pytestmark = pytest.mark.warren_only


@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def delayed_exchange(amqp, ch, routing_type="direct"):
    return amqp.exchange(ch, "x-delayed-message", arguments={"x-delayed-type": routing_type})


def delay(ms):
    return pika.BasicProperties(headers={"x-delay": ms})


def test_messages_arrive_after_their_delay_in_due_order(amqp, ch):
    x = delayed_exchange(amqp, ch)
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="k")
    conn = amqp.connect()
    consumer = conn.channel()
    arrivals = []
    consumer.basic_consume(
        q, lambda c, m, p, b: arrivals.append((b, time.monotonic(), (p.headers or {}).get("x-delay"))), auto_ack=True
    )
    pump([conn], 0.1)
    start = time.monotonic()
    ch.basic_publish(x, "k", b"late", properties=delay(900))
    ch.basic_publish(x, "k", b"early", properties=delay(300))
    ch.basic_publish(x, "k", b"middle", properties=delay(600))
    ch.basic_publish(x, "k", b"now")
    pump_until([conn], lambda: len(arrivals) == 4, what="four deliveries")

    assert [body for body, _, _ in arrivals] == [b"now", b"early", b"middle", b"late"]
    due = {b"early": 300, b"middle": 600, b"late": 900}
    for body, at, header in arrivals[1:]:
        assert at - start >= due[body] / 1000 * 0.9, body  # never early (small clock slack)
        assert header == -due[body], body
    assert arrivals[0][2] is None


def test_delayed_messages_are_held_not_queued(amqp, ch):
    x = delayed_exchange(amqp, ch)
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"wait", properties=delay(1500))
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    pump_until([ch.connection], lambda: ch.queue_declare(q, passive=True).method.message_count == 1,
               what="the delayed message")
    assert drain(ch, q) == [b"wait"]


def test_routing_uses_the_delayed_type(amqp, ch):
    x = delayed_exchange(amqp, ch, "topic")
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="orders.*")
    ch.basic_publish(x, "orders.new", b"match", properties=delay(200))
    ch.basic_publish(x, "invoices.new", b"no match", properties=delay(100))
    pump_until([ch.connection], lambda: ch.queue_declare(q, passive=True).method.message_count == 1,
               what="the matching message")
    pump([ch.connection], 0.3)
    assert drain(ch, q) == [b"match"]


@pytest.mark.parametrize("value", [0, -500], ids=["zero", "negative"])
def test_no_positive_delay_means_no_delay(amqp, ch, value):
    x = delayed_exchange(amqp, ch)
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"now", properties=delay(value))
    assert drain(ch, q) == [b"now"]


def test_string_delay_is_parsed(amqp, ch):
    x = delayed_exchange(amqp, ch)
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="k")
    start = time.monotonic()
    ch.basic_publish(x, "k", b"s", properties=delay("300"))
    pump_until([ch.connection], lambda: ch.queue_declare(q, passive=True).method.message_count == 1,
               what="the delayed message")
    assert time.monotonic() - start >= 0.27


def test_x_delayed_type_is_required(amqp):
    ch = amqp.connect().channel()
    text = expect_channel_error(
        406, ch.exchange_declare, exchange=amqp.name("x.delayed"), exchange_type="x-delayed-message"
    )
    assert text == "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"


def test_x_delayed_type_cannot_be_itself(amqp):
    ch = amqp.connect().channel()
    text = expect_channel_error(
        406,
        ch.exchange_declare,
        exchange=amqp.name("x.delayed"),
        exchange_type="x-delayed-message",
        arguments={"x-delayed-type": "x-delayed-message"},
    )
    assert text == "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"
