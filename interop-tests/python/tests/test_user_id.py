"""The user_id property is validated against the authenticated user."""

import pika

from helpers import get_one, params, wait_channel_closed


def test_matching_user_id_is_accepted(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    user = params().credentials.username
    ch.basic_publish("", q, b"me", properties=pika.BasicProperties(user_id=user))
    _, props, body = get_one(ch, q)
    assert body == b"me" and props.user_id == user


def test_mismatched_user_id_closes_channel_406(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    ch.basic_publish("", q, b"forged", properties=pika.BasicProperties(user_id="mallory"))
    text = wait_channel_closed(ch, 406)
    assert text.startswith("PRECONDITION_FAILED")
    assert "mallory" in text
    other = amqp.connect().channel()
    assert other.basic_get(q)[0] is None  # the forged message was not enqueued
