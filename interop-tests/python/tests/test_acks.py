"""Acknowledgements: ack (single and multiple), nack/reject with and without
requeue, basic.recover, and acking an unknown delivery tag."""

from helpers import drain, get_one, wait_channel_closed, wait_until


def setup_queue(amqp, n):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch)
    for i in range(n):
        ch.basic_publish("", q, f"m{i}".encode())
    return ch, q


def ready(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def test_reject_with_requeue_redelivers(amqp):
    ch, q = setup_queue(amqp, 1)
    method, _, body = get_one(ch, q, auto_ack=False)
    assert method.redelivered is False
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, body2 = get_one(ch, q, auto_ack=False)
    assert body2 == body and method.redelivered is True
    ch.basic_ack(method.delivery_tag)
    assert ready(ch, q) == 0


def test_reject_without_requeue_drops(amqp):
    ch, q = setup_queue(amqp, 1)
    method, _, _ = get_one(ch, q, auto_ack=False)
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert ch.basic_get(q)[0] is None
    assert ready(ch, q) == 0


def test_nack_with_requeue_redelivers_to_consumer(amqp):
    _, q = setup_queue(amqp, 1)
    conn = amqp.connect()
    ch = conn.channel()
    deliveries = []

    def on_msg(c, method, props, body):
        deliveries.append((method.redelivered, body))
        if not method.redelivered:
            c.basic_nack(method.delivery_tag, requeue=True)
        else:
            c.basic_ack(method.delivery_tag)

    ch.basic_consume(q, on_msg)
    wait_until(conn, lambda: len(deliveries) == 2, what="delivery + redelivery")
    assert deliveries == [(False, b"m0"), (True, b"m0")]


def test_nack_multiple_without_requeue_drops_all(amqp):
    ch, q = setup_queue(amqp, 3)
    tags = [get_one(ch, q, auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    assert ready(ch, q) == 0
    ch.close()  # nothing unacked left to requeue
    assert ready(amqp.connect().channel(), q) == 0


def test_nack_multiple_with_requeue(amqp):
    ch, q = setup_queue(amqp, 3)
    tags = [get_one(ch, q, auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.basic_nack(tags[1], multiple=True, requeue=True)  # first two back
    ch.basic_ack(tags[2])
    other = amqp.connect().channel()
    got = []
    for _ in range(2):
        method, _, body = get_one(other, q)
        got.append((method.redelivered, body))
    assert sorted(got) == [(True, b"m0"), (True, b"m1")]


def test_ack_multiple(amqp):
    ch, q = setup_queue(amqp, 4)
    tags = [get_one(ch, q, auto_ack=False)[0].delivery_tag for _ in range(4)]
    assert tags == sorted(tags) and len(set(tags)) == 4
    ch.basic_ack(tags[2], multiple=True)  # acks the first three
    ch.close()  # the fourth is requeued
    other = amqp.connect().channel()
    assert drain(other, q) == [b"m3"]


def test_recover_requeues_unacked(amqp):
    _, q = setup_queue(amqp, 2)
    conn = amqp.connect()
    ch = conn.channel()
    deliveries = []
    ch.basic_consume(q, lambda c, m, p, b: deliveries.append((m.redelivered, b)))
    wait_until(conn, lambda: len(deliveries) == 2, what="first deliveries")
    ch.basic_recover(requeue=True)
    wait_until(conn, lambda: len(deliveries) == 4, what="redeliveries after recover")
    assert deliveries[:2] == [(False, b"m0"), (False, b"m1")]
    assert sorted(deliveries[2:]) == [(True, b"m0"), (True, b"m1")]


def test_ack_unknown_delivery_tag_closes_channel_406(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_ack(delivery_tag=12345)
    text = wait_channel_closed(ch, 406)
    assert text.startswith("PRECONDITION_FAILED")
    assert "unknown delivery tag" in text
    assert conn.is_open


def test_double_ack_closes_channel_406(amqp):
    ch, q = setup_queue(amqp, 1)
    method, _, _ = get_one(ch, q, auto_ack=False)
    ch.basic_ack(method.delivery_tag)
    ch.basic_ack(method.delivery_tag)
    text = wait_channel_closed(ch, 406)
    assert "unknown delivery tag" in text
