"""The "retry later" pattern built from dead-lettering and TTL: a worker
rejects a message from the work queue; the work queue dead-letters it to a wait
queue whose TTL dead-letters it back to the work queue after the delay. Each
round adds to the x-death counts, which the worker uses to give up."""

import time

import pika
import pytest

from lifecycle import pump, pump_until


DELAY_MS = 300


def build(amqp, ch):
    work_x = amqp.exchange(ch, "direct")
    retry_x = amqp.exchange(ch, "direct")
    work = amqp.queue(ch, arguments={"x-dead-letter-exchange": retry_x, "x-dead-letter-routing-key": "wait"})
    ch.queue_bind(work, work_x, routing_key="task")
    wait = amqp.queue(
        ch,
        arguments={
            "x-message-ttl": DELAY_MS,
            "x-dead-letter-exchange": work_x,
            "x-dead-letter-routing-key": "task",
        },
    )
    ch.queue_bind(wait, retry_x, routing_key="wait")
    return work_x, work, wait


def rejections(props):
    for death in (props.headers or {}).get("x-death", []):
        if death["reason"] == "rejected":
            return death["count"]
    return 0


def test_rejected_message_comes_back_after_the_delay(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    work_x, work, wait = build(amqp, ch)

    seen = []  # (seconds since publish, rejections so far, routing key, x-death)

    def on_message(c, method, props, body):
        seen.append((time.monotonic() - start, rejections(props), method.routing_key, props.headers))
        if len(seen) < 4:
            c.basic_reject(method.delivery_tag, requeue=False)
        else:
            c.basic_ack(method.delivery_tag)

    worker_conn = amqp.connect()
    worker = worker_conn.channel()
    worker.basic_consume(work, on_message)
    pump([worker_conn], 0.1)
    start = time.monotonic()
    ch.basic_publish(work_x, "task", b"flaky job", properties=pika.BasicProperties(headers={"job": 7}))
    pump_until([worker_conn], lambda: len(seen) == 4, what="the first delivery and three retries")

    assert [count for _, count, _, _ in seen] == [0, 1, 2, 3]
    assert all(key == "task" for _, _, key, _ in seen)
    # each retry waited in the wait queue for at least (about) the TTL
    for earlier, later in zip(seen, seen[1:]):
        assert later[0] - earlier[0] >= DELAY_MS / 1000 * 0.8
    last = seen[-1][3]
    assert last["job"] == 7
    assert [(d["queue"], d["reason"], d["count"]) for d in last["x-death"]] == [
        (wait, "expired", 3),
        (work, "rejected", 3),
    ]
    assert last["x-first-death-queue"] == work
    pump([worker_conn], 0.2)
    assert len(seen) == 4  # acked: no fifth round
