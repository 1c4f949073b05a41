"""basic.qos: prefetch_count limits unacked deliveries per consumer
(global=false) or per channel (global=true, RabbitMQ's interpretation)."""

from helpers import settle, wait_until


def fill(amqp, n_queues, n_msgs):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    queues = []
    for _ in range(n_queues):
        q = amqp.queue(ch)
        for i in range(n_msgs):
            ch.basic_publish("", q, f"m{i}".encode())
        queues.append(q)
    return ch, queues


def ready(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def test_prefetch_per_consumer(amqp):
    probe, (q1, q2) = fill(amqp, 2, 5)
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)  # global=False: each new consumer gets 2
    got = {q1: [], q2: []}
    for q in (q1, q2):
        ch.basic_consume(q, lambda c, m, p, b, q=q: got[q].append(m.delivery_tag))
    wait_until(conn, lambda: len(got[q1]) == 2 and len(got[q2]) == 2, what="2 deliveries per consumer")
    settle(conn)
    assert len(got[q1]) == 2 and len(got[q2]) == 2
    assert ready(probe, q1) == 3 and ready(probe, q2) == 3

    ch.basic_ack(got[q1][0])  # frees one slot for that consumer only
    wait_until(conn, lambda: len(got[q1]) == 3, what="one more delivery after ack")
    settle(conn)
    assert len(got[q2]) == 2


def test_prefetch_global_shared_by_channel(amqp):
    probe, (q1, q2) = fill(amqp, 2, 5)
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    for q in (q1, q2):
        ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
    wait_until(conn, lambda: len(got) == 3, what="3 deliveries on the channel")
    settle(conn)
    assert len(got) == 3
    assert ready(probe, q1) + ready(probe, q2) == 7

    ch.basic_ack(got[-1], multiple=True)
    wait_until(conn, lambda: len(got) == 6, what="3 more after acking all")
    settle(conn)
    assert len(got) == 6


def test_prefetch_with_basic_get_is_unlimited(amqp):
    probe, (q,) = fill(amqp, 1, 3)
    ch = amqp.connect().channel()
    ch.basic_qos(prefetch_count=1)
    # prefetch applies to consumers, not to basic.get
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(3)]
    assert len(tags) == 3
    ch.basic_ack(tags[-1], multiple=True)
