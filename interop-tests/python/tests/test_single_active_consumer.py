"""Single active consumer (x-single-active-consumer = true) on a classic queue,
as RabbitMQ 3.10 does it:

- the first consumer to subscribe is the active one and gets every message;
  the others are registered (declare-ok counts them) but get nothing;
- when the active consumer goes (basic.cancel, channel or connection close),
  the waiting consumer with the highest x-priority takes over, or the earliest
  subscribed one among equals;
- a consumer subscribing later with a higher x-priority does NOT take over
  from an active one (quorum queues in RabbitMQ 4.0+ switch over; classic
  queues never do);
- basic.cancel does not hand the cancelled consumer's unacked messages to the
  next one (they stay with its channel until acked or the channel closes)."""

import pytest

from lifecycle import pump, pump_until



@pytest.fixture
def pch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


class Consumer:
    def __init__(self, amqp, queue, priority=None, auto_ack=True, prefetch=None):
        self.conn = amqp.connect()
        self.ch = self.conn.channel()
        if prefetch:
            self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []
        self.tags = []
        args = {"x-priority": priority} if priority is not None else None
        self.ctag = self.ch.basic_consume(queue, self._on, auto_ack=auto_ack, arguments=args)

    def _on(self, ch, method, props, body):
        self.got.append(body)
        self.tags.append(method.delivery_tag)


def publish(ch, queue, *bodies):
    for body in bodies:
        ch.basic_publish("", queue, body)


def test_only_the_first_consumer_gets_messages(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    a, b = Consumer(amqp, q), Consumer(amqp, q)
    assert pch.queue_declare(q, passive=True).method.consumer_count == 2
    publish(pch, q, b"m0", b"m1", b"m2", b"m3")
    pump_until([a.conn, b.conn], lambda: len(a.got) == 4, what="four deliveries to the first consumer")
    pump([a.conn, b.conn], 0.3)
    assert (a.got, b.got) == ([b"m0", b"m1", b"m2", b"m3"], [])


def test_next_consumer_takes_over_after_cancel(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    a = Consumer(amqp, q, auto_ack=False)
    b = Consumer(amqp, q, auto_ack=False)
    publish(pch, q, b"m0", b"m1")
    pump_until([a.conn, b.conn], lambda: len(a.got) == 2, what="deliveries to the active consumer")
    a.ch.basic_cancel(a.ctag)
    publish(pch, q, b"m2", b"m3")
    pump_until([a.conn, b.conn], lambda: len(b.got) == 2, what="deliveries to the new active consumer")
    pump([a.conn, b.conn], 0.3)
    assert b.got == [b"m2", b"m3"]  # m0 and m1 are still unacked on a's channel
    assert a.got == [b"m0", b"m1"]
    a.ch.close()  # now they are requeued and go to the active consumer
    pump_until([b.conn], lambda: len(b.got) == 4, what="requeued messages")
    assert sorted(b.got[2:]) == [b"m0", b"m1"]


def test_next_consumer_takes_over_when_the_connection_closes(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    a = Consumer(amqp, q, auto_ack=False)
    b = Consumer(amqp, q, auto_ack=False)
    c = Consumer(amqp, q, auto_ack=False)
    publish(pch, q, b"m0")
    pump_until([a.conn], lambda: a.got, what="delivery to the active consumer")
    a.conn.close()  # unacked m0 is requeued
    publish(pch, q, b"m1")
    pump_until([b.conn, c.conn], lambda: len(b.got) == 2, what="m0 and m1 for the next consumer")
    pump([b.conn, c.conn], 0.3)
    assert (b.got, c.got) == ([b"m0", b"m1"], [])


def test_a_later_higher_priority_consumer_does_not_take_over(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    low = Consumer(amqp, q, priority=1)
    pump([low.conn], 0.1)
    high = Consumer(amqp, q, priority=5)
    publish(pch, q, b"m0", b"m1", b"m2")
    pump_until([low.conn, high.conn], lambda: len(low.got) == 3, what="deliveries to the first consumer")
    pump([low.conn, high.conn], 0.3)
    assert high.got == []
    low.conn.close()
    publish(pch, q, b"m3")
    pump_until([high.conn], lambda: high.got, what="delivery to the remaining consumer")
    assert high.got == [b"m3"]


def test_highest_priority_waiting_consumer_takes_over(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    first = Consumer(amqp, q, priority=0)
    pump([first.conn], 0.1)
    mid = Consumer(amqp, q, priority=1)
    pump([mid.conn], 0.1)
    top = Consumer(amqp, q, priority=10)
    pump([top.conn], 0.1)
    later_mid = Consumer(amqp, q, priority=1)
    conns = [first.conn, mid.conn, top.conn, later_mid.conn]
    publish(pch, q, b"one")
    pump_until(conns, lambda: first.got, what="delivery to the first consumer")
    first.conn.close()
    conns.remove(first.conn)
    publish(pch, q, b"two")
    pump_until(conns, lambda: top.got, what="delivery to the highest-priority consumer")
    top.conn.close()
    conns.remove(top.conn)
    publish(pch, q, b"three")
    pump_until(conns, lambda: mid.got or later_mid.got, what="delivery after the second failover")
    pump(conns, 0.3)
    # equal priorities: the earlier subscriber wins
    assert (first.got, top.got, mid.got, later_mid.got) == ([b"one"], [b"two"], [b"three"], [])


def test_without_priorities_subscription_order_decides(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": True})
    consumers = []
    for _ in range(3):
        consumers.append(Consumer(amqp, q))
        pump([consumers[-1].conn], 0.1)
    a, b, c = consumers
    publish(pch, q, b"1")
    pump_until([a.conn], lambda: a.got, what="delivery to the first subscriber")
    a.conn.close()
    publish(pch, q, b"2")
    pump_until([b.conn, c.conn], lambda: b.got, what="delivery to the second subscriber")
    pump([b.conn, c.conn], 0.3)
    assert (a.got, b.got, c.got) == ([b"1"], [b"2"], [])


def test_single_active_consumer_false_is_normal_round_robin(amqp, pch):
    q = amqp.queue(pch, arguments={"x-single-active-consumer": False})
    a, b = Consumer(amqp, q), Consumer(amqp, q)
    pump([a.conn, b.conn], 0.1)
    publish(pch, q, b"m0", b"m1", b"m2", b"m3")
    pump_until([a.conn, b.conn], lambda: len(a.got) + len(b.got) == 4, what="four deliveries")
    assert a.got and b.got
