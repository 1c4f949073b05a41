"""Durability across a broker restart (BROKER_RESTART_CMD): durable queues,
exchanges and bindings come back with their arguments, persistent messages
come back unchanged and in order, unacked deliveries come back flagged
redelivered; transient entities and transient messages are gone."""

import datetime
import decimal

import pika

from helpers import drain, expect_channel_error, get_one, wait_until

PERSISTENT = pika.DeliveryMode.Persistent
TRANSIENT = pika.DeliveryMode.Transient


def test_durable_topology_survives_and_transient_topology_is_gone(amqp, restart_broker):
    ch = amqp.connect().channel()
    args = {"x-custom-arg": "v", "x-dead-letter-exchange": "interop.py.dlx"}
    dq = amqp.queue(ch, durable=True, arguments=args)
    dx = amqp.exchange(ch, "topic", durable=True)
    ch.queue_bind(dq, dx, routing_key="orders.*")
    tq = amqp.queue(ch, durable=False)
    tx = amqp.exchange(ch, "fanout", durable=False)

    restart_broker()

    conn = amqp.connect()
    ch = conn.channel()
    ch.queue_declare(dq, passive=True)
    ch.queue_declare(dq, durable=True, arguments=args)  # same attributes: fine
    ch.exchange_declare(dx, passive=True)
    ch.exchange_declare(dx, "topic", durable=True)

    text = expect_channel_error(
        406, conn.channel().queue_declare, dq, durable=True, arguments={**args, "x-dead-letter-exchange": "other"}
    )
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange'"), text
    text = expect_channel_error(406, conn.channel().queue_declare, dq, durable=False, arguments=args)
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg 'durable'"), text
    text = expect_channel_error(406, conn.channel().exchange_declare, dx, "direct", durable=True)
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg 'type'"), text

    # The binding survived: a mandatory publish through dx is routed to dq.
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(dx, "orders.new", b"routed", mandatory=True)
    assert get_one(ch, dq)[2] == b"routed"

    text = expect_channel_error(404, conn.channel().queue_declare, tq, passive=True)
    assert text.startswith("NOT_FOUND") and tq in text, text
    text = expect_channel_error(404, conn.channel().exchange_declare, tx, passive=True)
    assert text.startswith("NOT_FOUND") and tx in text, text


def message_properties(i, delivery_mode):
    return pika.BasicProperties(
        content_type="application/octet-stream",
        content_encoding="identity",
        headers={
            "str": "v",
            "int": 7,
            "neg": -3,
            "big": 2**40,
            "dec": decimal.Decimal("1.25"),
            "bool": True,
            "void": None,
            "bytes": b"\x00\xff",
            "time": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "list": [1, "two", {"k": [True, None]}],
            "nested": {"k": "v", "deeper": {"n": i, "l": [1, 2, 3]}},
        },
        delivery_mode=delivery_mode,
        priority=i % 10,
        correlation_id=f"corr-{i}",
        reply_to="interop.py.reply",
        message_id=f"msg-{i}",
        timestamp=1700000000 + i,
        type="durability.test",
        app_id="interop.py",
    )


def test_persistent_messages_survive_and_transient_ones_do_not(amqp, restart_broker):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    dq = amqp.queue(ch, durable=True)
    tq = amqp.queue(ch, durable=False)
    bodies = [b"first", b"", bytes(range(256)), b"x" * 300_000, "last \u00e9".encode()]  # 300 KB: several frames
    sent = []
    for i, body in enumerate(bodies):
        props = message_properties(i, PERSISTENT)
        ch.basic_publish("", dq, body, properties=props)  # confirmed (confirm_delivery)
        sent.append((body, props))
        ch.basic_publish("", dq, b"transient %d" % i, properties=message_properties(100 + i, TRANSIENT))
        ch.basic_publish("", tq, b"persistent in a transient queue", properties=message_properties(i, PERSISTENT))
    assert ch.queue_declare(dq, passive=True).method.message_count == 2 * len(bodies)

    restart_broker()

    ch = amqp.connect().channel()
    assert ch.queue_declare(dq, passive=True).method.message_count == len(bodies)
    for i, (body, props) in enumerate(sent):
        method, got, got_body = ch.basic_get(dq, auto_ack=True)
        assert method is not None, f"message {i} missing after the restart"
        assert got_body == body, f"message {i}: body differs"
        assert vars(got) == vars(props), f"message {i}: properties differ"
    assert drain(ch, dq) == []
    expect_channel_error(404, ch.queue_declare, tq, passive=True)


def test_unacked_deliveries_come_back_redelivered(amqp, restart_broker):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch, durable=True)
    for i in range(4):
        ch.basic_publish("", q, f"m{i}".encode(), properties=pika.BasicProperties(delivery_mode=PERSISTENT))

    consumer_conn = amqp.connect()
    consumer = consumer_conn.channel()
    consumer.basic_qos(prefetch_count=2)
    got = []
    consumer.basic_consume(q, lambda c, m, p, body: got.append((m, body)))
    wait_until(consumer_conn, lambda: len(got) == 2, what="two deliveries")
    consumer.basic_ack(got[0][0].delivery_tag)  # m0 acked; m1 stays unacked and m2 follows
    wait_until(consumer_conn, lambda: len(got) == 3, what="a third delivery after the ack")
    assert [(m.redelivered, body) for m, body in got] == [(False, b"m0"), (False, b"m1"), (False, b"m2")]
    # m1 and m2 are unacked and m3 was never delivered when the broker restarts.

    restart_broker()

    ch = amqp.connect().channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 3
    after = [get_one(ch, q) for _ in range(3)]
    assert [(m.redelivered, body) for m, _props, body in after] == [(True, b"m1"), (True, b"m2"), (False, b"m3")]
    assert drain(ch, q) == []
