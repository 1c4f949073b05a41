"""Priority queues (x-max-priority): higher `priority` first, FIFO within a
priority; no priority counts as 0; a priority above the maximum counts as the
maximum (the property itself is delivered unchanged). x-max-priority 0 is
accepted and makes an ordinary FIFO queue. Invalid values are in
test_queue_arguments.py."""

import pika
import pytest

from helpers import drain
from lifecycle import pump, pump_until



@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


# (body, priority) in publish order
MIXED = [
    ("p-none-a", None),
    ("p1", 1),
    ("p9", 9),
    ("p5-a", 5),
    ("p3", 3),
    ("p5-b", 5),
    ("p0", 0),
    ("p-none-b", None),
    ("p200", 200),
    ("p255", 255),
]


def publish(ch, queue, messages):
    for body, priority in messages:
        ch.basic_publish("", queue, body.encode(), properties=pika.BasicProperties(priority=priority))


def bodies(raw):
    return [b.decode() for b in raw]


def test_higher_priority_first_fifo_within_priority(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 10})
    publish(ch, q, MIXED)
    assert ch.queue_declare(q, passive=True).method.message_count == len(MIXED)
    # 200 and 255 count as 10 (publish order), then 9, 5, 5, 3, 1, then the
    # priority-0 group (no priority and 0) in publish order
    assert bodies(drain(ch, q)) == ["p200", "p255", "p9", "p5-a", "p5-b", "p3", "p1", "p-none-a", "p0", "p-none-b"]


def test_priority_above_max_counts_as_max(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 5})
    publish(ch, q, MIXED)
    # 9, 200 and 255 all count as 5 and keep publish order with the two 5s
    assert bodies(drain(ch, q)) == ["p9", "p5-a", "p5-b", "p200", "p255", "p3", "p1", "p-none-a", "p0", "p-none-b"]


def test_priority_property_is_delivered_unchanged(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 5})
    ch.basic_publish("", q, b"x", properties=pika.BasicProperties(priority=200))
    ch.basic_publish("", q, b"y")
    assert ch.basic_get(q, auto_ack=True)[1].priority == 200
    assert ch.basic_get(q, auto_ack=True)[1].priority is None


def test_max_priority_255(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 255})
    publish(ch, q, MIXED)
    assert bodies(drain(ch, q)) == ["p255", "p200", "p9", "p5-a", "p5-b", "p3", "p1", "p-none-a", "p0", "p-none-b"]


def test_max_priority_1(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 1})
    publish(ch, q, MIXED)
    assert bodies(drain(ch, q)) == ["p1", "p9", "p5-a", "p3", "p5-b", "p200", "p255", "p-none-a", "p0", "p-none-b"]


def test_max_priority_zero_is_a_plain_fifo_queue(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 0})
    publish(ch, q, MIXED)
    assert bodies(drain(ch, q)) == [body for body, _ in MIXED]


def test_without_x_max_priority_priorities_are_ignored(amqp, ch):
    q = amqp.queue(ch)
    publish(ch, q, MIXED)
    assert bodies(drain(ch, q)) == [body for body, _ in MIXED]


def test_consumer_gets_backlog_in_priority_order(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 10})
    publish(ch, q, [("low", 1), ("high", 8), ("mid", 4)])
    conn = amqp.connect()
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    got = []

    def on_message(c, method, props, body):
        got.append(body.decode())
        c.basic_ack(method.delivery_tag)
        if body == b"high":  # arrives while "mid" and "low" wait
            ch.basic_publish("", q, b"urgent", properties=pika.BasicProperties(priority=9))

    consumer.basic_consume(q, on_message)
    pump_until([conn], lambda: len(got) == 4, what="four deliveries")
    pump([conn], 0.2)
    # the ack of "high" lets "mid" go out before "urgent" is published, so
    # "urgent" is second or third, but always before "low"
    assert got[0] == "high" and got[-1] == "low"
    assert sorted(got[1:3]) == ["mid", "urgent"]


def test_requeued_message_keeps_its_priority_place(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-priority": 10})
    publish(ch, q, [("a", 2), ("b", 7)])
    method, _, body = ch.basic_get(q)
    assert body == b"b"
    ch.basic_nack(method.delivery_tag, requeue=True)  # back to its place: first
    assert bodies(drain(ch, q)) == ["b", "a"]
