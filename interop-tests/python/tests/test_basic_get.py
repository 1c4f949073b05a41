"""basic.get: get-ok carries the remaining message count, get-empty when the
queue is empty; manual-ack gets and redelivery flags."""

import decimal

import pika

from helpers import get_one


def test_get_ok_message_count_and_get_empty(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    q = amqp.queue(ch)
    for i in range(3):
        ch.basic_publish("", q, f"m{i}".encode(), properties=pika.BasicProperties(message_id=f"id{i}"))

    seen = []
    for expected_remaining in (2, 1, 0):
        method, props, body = ch.basic_get(q, auto_ack=True)
        assert isinstance(method, pika.spec.Basic.GetOk)
        assert method.message_count == expected_remaining
        assert method.exchange == "" and method.routing_key == q
        assert method.redelivered is False
        seen.append((props.message_id, body))
    assert seen == [("id0", b"m0"), ("id1", b"m1"), ("id2", b"m2")]

    method, props, body = ch.basic_get(q, auto_ack=True)
    assert method is None and body is None  # basic.get-empty


def test_get_with_manual_ack_and_requeue_on_channel_close(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"payload")
    method, _, body = get_one(ch, q, auto_ack=False)
    assert body == b"payload"
    # unacked: not visible to others
    other = amqp.connect().channel()
    assert other.basic_get(q, auto_ack=True)[0] is None
    ch.close()  # unacked messages are requeued
    method, _, body = get_one(other, q)
    assert body == b"payload" and method.redelivered is True


def test_properties_round_trip(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"str": "v", "int": 7, "neg": -3, "big": 2**40, "dec": decimal.Decimal("1.25"), "bool": True, "list": [1, "two"], "nested": {"k": "v"}},
        delivery_mode=2,
        priority=5,
        correlation_id="corr",
        reply_to="replies",
        expiration="600000",
        message_id="mid",
        timestamp=1700000000,
        type="kind",
        app_id="interop",
    )
    body = bytes(range(256)) * 1000  # binary, bigger than one frame
    ch.basic_publish("", q, body, properties=props)
    _, got, got_body = get_one(ch, q)
    assert got_body == body
    for field in (
        "content_type",
        "content_encoding",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "app_id",
    ):
        assert getattr(got, field) == getattr(props, field), field
    assert got.headers["str"] == "v"
    assert got.headers["int"] == 7 and got.headers["neg"] == -3
    assert got.headers["big"] == 2**40 and got.headers["dec"] == decimal.Decimal("1.25")
    assert got.headers["bool"] is True
    assert got.headers["list"] == [1, "two"]
    assert got.headers["nested"] == {"k": "v"}


def test_empty_body(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"")
    _, _, body = get_one(ch, q)
    assert body == b""
