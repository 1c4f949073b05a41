"""Tutorial 2: work queues -- manual acks, fair dispatch with prefetch=1,
durable queue with persistent messages."""

import pika

from helpers import get_one, settle, wait_until


def test_durable_queue_and_persistent_messages(amqp):
    ch = amqp.connect().channel()
    queue = amqp.queue(ch, durable=True)
    ch.confirm_delivery()
    ch.basic_publish(
        "", queue, b"task", properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    )
    # Redeclaring with the same (durable) attributes is fine.
    ok = ch.queue_declare(queue, durable=True)
    assert ok.method.message_count == 1
    method, props, body = get_one(ch, queue)
    assert body == b"task"
    assert props.delivery_mode == 2


def test_fair_dispatch_with_prefetch_one(amqp):
    """A busy worker (unacked message, prefetch=1) gets nothing more; the
    other worker takes every remaining task."""
    setup = amqp.connect().channel()
    queue = amqp.queue(setup, durable=True)

    busy_conn, idle_conn = amqp.connect(), amqp.connect()
    busy, idle = busy_conn.channel(), idle_conn.channel()
    busy.basic_qos(prefetch_count=1)
    idle.basic_qos(prefetch_count=1)
    busy_got, idle_got = [], []
    busy.basic_consume(queue, lambda ch, m, p, body: busy_got.append(body))  # never acks

    def work(ch, method, props, body):
        idle_got.append(body)
        ch.basic_ack(method.delivery_tag)

    idle.basic_consume(queue, work)

    tasks = [f"task {i}".encode() for i in range(8)]
    for t in tasks:
        setup.basic_publish(
            "", queue, t, properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        )

    def pump_both():
        busy_conn.process_data_events(time_limit=0)
        idle_conn.process_data_events(time_limit=0)
        return len(busy_got) == 1 and len(idle_got) == 7

    wait_until(idle_conn, pump_both, what="busy worker 1 task, idle worker 7 tasks")
    settle(busy_conn)
    assert len(busy_got) == 1
    assert sorted(busy_got + idle_got) == sorted(tasks)


def test_unacked_message_goes_to_another_worker_when_worker_dies(amqp):
    setup = amqp.connect().channel()
    queue = amqp.queue(setup, durable=True)
    setup.basic_publish("", queue, b"important")

    dying_conn = amqp.connect()
    dying = dying_conn.channel()
    dying.basic_qos(prefetch_count=1)
    got = []
    dying.basic_consume(queue, lambda ch, m, p, body: got.append((m.redelivered, body)))
    wait_until(dying_conn, lambda: got, what="first delivery")
    assert got == [(False, b"important")]
    dying_conn.close()  # no ack: the broker must requeue

    worker_conn = amqp.connect()
    worker = worker_conn.channel()
    redelivered = []

    def on_msg(ch, method, props, body):
        redelivered.append((method.redelivered, body))
        ch.basic_ack(method.delivery_tag)

    worker.basic_consume(queue, on_msg)
    wait_until(worker_conn, lambda: redelivered, what="redelivery")
    assert redelivered == [(True, b"important")]
    assert worker.queue_declare(queue, passive=True).method.message_count == 0
