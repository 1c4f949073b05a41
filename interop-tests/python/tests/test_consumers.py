"""Consumers: consumer tags, client cancel, server-sent cancel when the queue
is deleted (consumer_cancel_notify), exclusive consumers, round-robin."""

from helpers import expect_channel_error, settle, wait_until


def test_cancel_stops_deliveries(amqp):
    pub = amqp.connect().channel()
    pub.confirm_delivery()
    q = amqp.queue(pub)
    conn = amqp.connect()
    ch = conn.channel()
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append((m.consumer_tag, b)), auto_ack=True)
    assert tag
    pub.basic_publish("", q, b"before")
    wait_until(conn, lambda: got, what="delivery before cancel")
    assert got == [(tag, b"before")]

    ch.basic_cancel(tag)
    pub.basic_publish("", q, b"after")
    settle(conn)
    assert got == [(tag, b"before")]
    ok = pub.queue_declare(q, passive=True)
    assert (ok.method.message_count, ok.method.consumer_count) == (1, 0)


def test_client_chosen_consumer_tag(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    tag = amqp.name("ctag")
    got = []
    assert ch.basic_consume(q, lambda c, m, p, b: got.append(m.consumer_tag), consumer_tag=tag) == tag
    ch.basic_publish("", q, b"x")
    wait_until(conn, lambda: got, what="delivery")
    assert got == [tag]


def test_server_cancels_consumer_when_queue_deleted(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None, auto_ack=True)

    amqp.connect().channel().queue_delete(q)
    wait_until(conn, lambda: cancelled, what="server-sent basic.cancel")
    assert cancelled == [tag]
    assert ch.is_open  # the channel survives


def test_exclusive_consumer_blocks_others(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    other = amqp.connect().channel()
    text = expect_channel_error(403, other.basic_consume, q, lambda *a: None)
    assert text.startswith("ACCESS_REFUSED")


def test_consume_from_missing_queue_is_404(amqp):
    ch = amqp.connect().channel()
    text = expect_channel_error(404, ch.basic_consume, amqp.name("missing"), lambda *a: None)
    assert text.startswith("NOT_FOUND")


def test_round_robin_between_consumers(amqp):
    pub = amqp.connect().channel()
    q = amqp.queue(pub)
    conn = amqp.connect()
    ch = conn.channel()
    got = {"a": [], "b": []}
    ch.basic_consume(q, lambda c, m, p, b: got["a"].append(b), auto_ack=True)
    ch.basic_consume(q, lambda c, m, p, b: got["b"].append(b), auto_ack=True)
    for i in range(10):
        pub.basic_publish("", q, f"m{i}".encode())
    wait_until(conn, lambda: len(got["a"]) + len(got["b"]) == 10, what="10 deliveries")
    assert len(got["a"]) == 5 and len(got["b"]) == 5
