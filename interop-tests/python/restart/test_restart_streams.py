"""A stream survives a broker restart (BROKER_RESTART_CMD): its declaration
and arguments, every confirmed message at the same offset with the same body
and headers, and publishing afterwards continues at the next offset."""

import pika

from helpers import expect_channel_error, settle, wait_until

ARGS = {"x-queue-type": "stream", "x-max-age": "7D", "x-max-length-bytes": 100_000_000}


def read_from_first(amqp, q, n):
    """Consume from "first" on a new connection until n deliveries arrived and
    no more follow; returns (reader connection, [(offset, body, headers)], channel)."""
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=100)
    got = []

    def on_message(c, method, props, body):
        got.append((props.headers["x-stream-offset"], body, props.headers))
        c.basic_ack(method.delivery_tag)

    ch.basic_consume(q, on_message, arguments={"x-stream-offset": "first"})
    wait_until(conn, lambda: len(got) >= n, what=f"{n} deliveries from the stream")
    settle(conn)
    assert len(got) == n, f"expected {n} deliveries, got {len(got)}"
    return conn, got


def test_stream_messages_and_offsets_survive_a_restart(amqp, restart_broker):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, durable=True, arguments=ARGS)
    bodies = [f"m{i}".encode() for i in range(50)] + [b"", bytes(range(256)), b"x" * 300_000]
    for i, body in enumerate(bodies):
        # each publish is confirmed before the next (BlockingChannel in confirm mode)
        ch.basic_publish("", q, body, properties=pika.BasicProperties(headers={"n": i, "s": "v"}))
    _conn, before = read_from_first(amqp, q, len(bodies))
    assert [off for off, _b, _h in before] == list(range(len(bodies)))

    restart_broker()

    conn = amqp.connect()
    ch = conn.channel()
    ch.queue_declare(q, passive=True)
    ch.queue_declare(q, durable=True, arguments=ARGS)  # same arguments: fine
    text = expect_channel_error(406, conn.channel().queue_declare, q, durable=True, arguments={**ARGS, "x-max-age": "1D"})
    assert text == f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{q}' in vhost '/': received '1D' but current is '7D'"

    reader_conn, after = read_from_first(amqp, q, len(bodies))
    assert after == before, "same offsets, bodies and headers after the restart"

    # Publishing continues at the next offset; the attached consumer gets it live.
    pub = conn.channel()
    pub.confirm_delivery()
    for body in (b"after-1", b"after-2"):
        pub.basic_publish("", q, body)
    n = len(bodies)
    wait_until(reader_conn, lambda: len(after) == n + 2, what="the messages published after the restart")
    assert [(off, body) for off, body, _h in after[n:]] == [(n, b"after-1"), (n + 1, b"after-2")]
