"""Consumer priorities (basic.consume argument x-priority, default 0, may be
negative): messages go to the highest-priority consumer that can take one
(prefetch not full); lower-priority consumers get messages only while every
higher one is at its prefetch limit. Equal priorities share round-robin."""

import pytest

from lifecycle import pump, pump_until


class Consumer:
    def __init__(self, amqp, queue, priority=None, prefetch=None, auto_ack=False):
        self.conn = amqp.connect()
        self.ch = self.conn.channel()
        if prefetch:
            self.ch.basic_qos(prefetch_count=prefetch)
        self.got = []
        self.tags = []
        args = {"x-priority": priority} if priority is not None else None
        self.ch.basic_consume(queue, self._on, auto_ack=auto_ack, arguments=args)

    def _on(self, ch, method, props, body):
        self.got.append(body)
        self.tags.append(method.delivery_tag)


@pytest.fixture
def pch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def publish(ch, queue, bodies):
    for body in bodies:
        ch.basic_publish("", queue, body)


def test_higher_priority_consumer_gets_messages_until_its_prefetch_is_full(amqp, pch):
    q = amqp.queue(pch)
    low = Consumer(amqp, q, prefetch=10)  # subscribes first, priority 0
    high = Consumer(amqp, q, priority=10, prefetch=2)
    conns = [low.conn, high.conn]
    pump(conns, 0.1)
    publish(pch, q, [f"m{i}".encode() for i in range(5)])
    pump_until(conns, lambda: len(low.got) + len(high.got) == 5, what="five deliveries")
    assert high.got == [b"m0", b"m1"]
    assert low.got == [b"m2", b"m3", b"m4"]

    high.ch.basic_ack(high.tags[-1], multiple=True)  # room again for the high one
    pump(conns, 0.2)
    publish(pch, q, [b"m5", b"m6"])
    pump_until(conns, lambda: len(high.got) == 4, what="deliveries to the high-priority consumer")
    pump(conns, 0.2)
    assert high.got[2:] == [b"m5", b"m6"]
    assert len(low.got) == 3


def test_negative_priority_is_below_the_default(amqp, pch):
    q = amqp.queue(pch)
    neg = Consumer(amqp, q, priority=-5, auto_ack=True)
    default = Consumer(amqp, q, auto_ack=True)
    conns = [neg.conn, default.conn]
    pump(conns, 0.1)
    publish(pch, q, [f"m{i}".encode() for i in range(4)])
    pump_until(conns, lambda: len(default.got) == 4, what="four deliveries to the default-priority consumer")
    pump(conns, 0.2)
    assert neg.got == []


def test_equal_priorities_round_robin(amqp, pch):
    q = amqp.queue(pch)
    a = Consumer(amqp, q, priority=3, auto_ack=True)
    b = Consumer(amqp, q, priority=3, auto_ack=True)
    conns = [a.conn, b.conn]
    pump(conns, 0.1)
    publish(pch, q, [f"m{i}".encode() for i in range(4)])
    pump_until(conns, lambda: len(a.got) + len(b.got) == 4, what="four deliveries")
    assert (a.got, b.got) == ([b"m0", b"m2"], [b"m1", b"m3"])


@pytest.mark.parametrize(
    "value, type_name",
    [("high", "longstr"), (True, "bool")],
)
def test_x_priority_of_the_wrong_type_is_406(amqp, value, type_name):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    ch2 = conn.channel()
    try:
        ch2.basic_consume(q, lambda *a: None, arguments={"x-priority": value})
    except Exception as exc:  # pika.exceptions.ChannelClosedByBroker
        assert exc.reply_code == 406
        assert exc.reply_text == (
            f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
            f'"expected integer, got {type_name}"'
        )
    else:
        raise AssertionError("basic.consume with a non-integer x-priority succeeded")


def test_x_priority_beyond_32_bits_is_accepted(amqp, pch):
    q = amqp.queue(pch)
    big = Consumer(amqp, q, priority=2**40, auto_ack=True)  # pika sends a long (64-bit)
    other = Consumer(amqp, q, priority=2**31 - 1, auto_ack=True)
    conns = [big.conn, other.conn]
    pump(conns, 0.1)
    publish(pch, q, [b"m0", b"m1"])
    pump_until(conns, lambda: len(big.got) == 2, what="deliveries to the 2**40 consumer")
    assert other.got == []
