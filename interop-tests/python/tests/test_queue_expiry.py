"""Queue expiry (x-expires): a queue that stays unused for N ms is deleted.
Unused means no consumers, and no queue.declare (passive or not) or basic.get
on it for that long; its messages go with it (they are not dead-lettered).

The checks here are passive declares, so they are spaced further apart than
the x-expires value (each one restarts the timer)."""

import pytest

from helpers import drain
from lifecycle import exists, pump, wait_gone



def test_unused_queue_is_deleted_with_its_messages(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    dlx = amqp.exchange(ch, "fanout")
    dlq = amqp.queue(ch)
    ch.queue_bind(dlq, dlx)
    q = amqp.queue(ch, arguments={"x-expires": 400, "x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"goes with the queue")
    wait_gone(conn, q, poll=1.0)
    assert drain(ch, dlq) == []  # messages of an expired queue are not dead-lettered


def test_a_consumer_keeps_the_queue_alive(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch, arguments={"x-expires": 400})
    tag = ch.basic_consume(q, lambda *a: None, auto_ack=True)
    pump([conn], 1.5)
    assert exists(conn, q)
    ch.basic_cancel(tag)  # the expiry timer starts again from here
    wait_gone(conn, q, poll=1.0)


def test_declare_and_get_reset_the_timer(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch, arguments={"x-expires": 1500})
    for _ in range(6):  # 3 s in all, never 1.5 s without a use
        conn.sleep(0.25)
        ch.queue_declare(q, passive=True)
        conn.sleep(0.25)
        ch.basic_get(q)
    assert exists(conn, q)
    wait_gone(conn, q, poll=2.5)
