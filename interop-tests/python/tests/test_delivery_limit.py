"""Delivery limit (x-delivery-limit) and the x-delivery-count header.

RabbitMQ 3.10 has both only on quorum queues (durable, x-queue-type quorum; a
classic queue with x-delivery-limit is refused: 406 "invalid arg
'x-delivery-limit' for queue '...' in vhost '/' of queue type
rabbit_classic_queue"). A message returned (nack/reject with requeue) is
redelivered with x-delivery-count = number of earlier returns; once it has
been returned more than `limit` times it is dead-lettered with reason
delivery_limit, or dropped when the queue has no dead-letter exchange. So with
limit N a message is delivered at most N + 1 times.

Warren accepts x-delivery-limit on any queue; the classic-queue test is
Warren-only."""

import pika
import pytest

from helpers import get_one
from lifecycle import depth, pump, pump_until



@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def quorum(limit, **more):
    return {"x-queue-type": "quorum", "x-delivery-limit": limit, **more}


def sink(amqp, ch):
    dlx = amqp.exchange(ch, "fanout")
    dlq = amqp.queue(ch)
    ch.queue_bind(dlq, dlx)
    return dlx, dlq


def consume_and_requeue(amqp, queue, expect):
    """Consume, recording (redelivered, x-delivery-count or None), and nack
    every delivery with requeue until `expect` deliveries were seen."""
    conn = amqp.connect()
    consumer = conn.channel()
    seen = []

    def on_message(c, method, props, body):
        seen.append((method.redelivered, (props.headers or {}).get("x-delivery-count")))
        c.basic_nack(method.delivery_tag, requeue=True)

    consumer.basic_consume(queue, on_message)
    pump_until([conn], lambda: len(seen) >= expect, what=f"{expect} deliveries")
    pump([conn], 0.5)  # and no more
    return seen


def check_delivery_limit_dead_letter(ch, dlq, queue, body):
    method, props, got = get_one(ch, dlq)
    assert got == body
    h = props.headers
    assert h["app"] == "x"
    assert "x-delivery-count" not in h
    [death] = h["x-death"]
    assert (death["reason"], death["queue"], death["exchange"], death["routing-keys"], death["count"]) == (
        "delivery_limit",
        queue,
        "",
        [queue],
        1,
    )
    assert h["x-first-death-reason"] == "delivery_limit"


def test_quorum_queue_redeliveries_carry_x_delivery_count_then_dead_letter(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    q = amqp.queue(ch, durable=True, arguments=quorum(2, **{"x-dead-letter-exchange": dlx}))
    ch.basic_publish("", q, b"poison", properties=pika.BasicProperties(headers={"app": "x"}))
    seen = consume_and_requeue(amqp, q, 3)
    # first delivery: no header; then the number of earlier returns
    assert seen == [(False, None), (True, 1), (True, 2)]
    check_delivery_limit_dead_letter(ch, dlq, q, b"poison")
    assert depth(ch, q) == 0


def test_quorum_queue_basic_get_reports_x_delivery_count_from_zero(amqp, ch):
    q = amqp.queue(ch, durable=True, arguments=quorum(1))
    ch.basic_publish("", q, b"m")
    counts = []
    for _ in range(2):
        method, props, _ = get_one(ch, q, auto_ack=False)
        counts.append((method.redelivered, props.headers["x-delivery-count"]))
        ch.basic_reject(method.delivery_tag, requeue=True)
    # basic.get (unlike basic.deliver) includes the header on the first delivery
    assert counts == [(False, 0), (True, 1)]
    assert depth(ch, q) == 0  # returned twice with limit 1: dropped (no DLX)


def test_quorum_queue_without_dead_letter_exchange_drops(amqp, ch):
    q = amqp.queue(ch, durable=True, arguments=quorum(1))
    ch.basic_publish("", q, b"m")
    seen = consume_and_requeue(amqp, q, 2)
    assert seen == [(False, None), (True, 1)]
    assert depth(ch, q) == 0


def test_quorum_queue_without_limit_redelivers_forever(amqp, ch):
    q = amqp.queue(ch, durable=True, arguments={"x-queue-type": "quorum"})
    ch.basic_publish("", q, b"m")
    seen = consume_and_requeue(amqp, q, 6)
    assert seen[:6] == [(False, None)] + [(True, n) for n in range(1, 6)]


@pytest.mark.warren_only
def test_classic_queue_delivery_limit(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-delivery-limit": 2, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"poison", properties=pika.BasicProperties(headers={"app": "x"}))
    seen = consume_and_requeue(amqp, q, 3)
    assert seen == [(False, None), (True, 1), (True, 2)]
    check_delivery_limit_dead_letter(ch, dlq, q, b"poison")
    assert depth(ch, q) == 0
