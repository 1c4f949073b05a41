"""Queue length limits: x-max-length (messages), x-max-length-bytes (body
bytes only: properties and headers do not count) and x-overflow
(drop-head, the default; reject-publish; reject-publish-dlx)."""

import pika
import pytest

from helpers import drain, get_one
from lifecycle import depth, pump



@pytest.fixture
def ch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def sink(amqp, ch):
    dlx = amqp.exchange(ch, "fanout")
    dlq = amqp.queue(ch)
    ch.queue_bind(dlq, dlx)
    return dlx, dlq


def publish_all(ch, queue, bodies):
    """Publish with confirms; returns 'ack'/'nack' per message."""
    outcome = []
    for body in bodies:
        try:
            ch.basic_publish("", queue, body)
            outcome.append("ack")
        except pika.exceptions.NackError:
            outcome.append("nack")
    return outcome


def dead_letters(ch, dlq, n):
    out = []
    for _ in range(n):
        _, props, body = get_one(ch, dlq)
        out.append((body, props.headers["x-death"][0]["reason"]))
    return out


@pytest.mark.parametrize("overflow", [None, "drop-head"], ids=["default", "drop-head"])
def test_max_length_drops_oldest_and_dead_letters_them_as_maxlen(amqp, ch, overflow):
    dlx, dlq = sink(amqp, ch)
    args = {"x-max-length": 2, "x-dead-letter-exchange": dlx}
    if overflow:
        args["x-overflow"] = overflow
    q = amqp.queue(ch, arguments=args)
    assert publish_all(ch, q, [b"m0", b"m1", b"m2", b"m3"]) == ["ack"] * 4
    assert depth(ch, q) == 2
    assert drain(ch, q) == [b"m2", b"m3"]
    assert dead_letters(ch, dlq, 2) == [(b"m0", "maxlen"), (b"m1", "maxlen")]


def test_maxlen_dead_letter_x_death(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    x = amqp.exchange(ch, "direct")
    q = amqp.queue(ch, arguments={"x-max-length": 1, "x-dead-letter-exchange": dlx})
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"old")
    ch.basic_publish(x, "k", b"new")
    method, props, body = get_one(ch, dlq)
    assert (body, method.exchange, method.routing_key) == (b"old", dlx, "k")
    [death] = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["exchange"], death["routing-keys"], death["count"]) == (
        "maxlen",
        q,
        x,
        ["k"],
        1,
    )
    assert props.headers["x-first-death-reason"] == "maxlen"


def test_max_length_zero_drops_every_message(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-max-length": 0, "x-dead-letter-exchange": dlx})
    assert publish_all(ch, q, [b"z"]) == ["ack"]
    assert depth(ch, q) == 0
    assert dead_letters(ch, dlq, 1) == [(b"z", "maxlen")]


def test_max_length_bytes_counts_body_bytes_only(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-length-bytes": 10})
    big_headers = pika.BasicProperties(headers={"padding": "x" * 500})
    ch.basic_publish("", q, b"12345", properties=big_headers)
    ch.basic_publish("", q, b"67890")  # exactly 10 body bytes: both kept
    assert depth(ch, q) == 2
    ch.basic_publish("", q, b"!")  # 11 bytes: the oldest goes
    assert drain(ch, q) == [b"67890", b"!"]


def test_a_message_bigger_than_max_length_bytes_is_dropped_too(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-length-bytes": 10})
    ch.basic_publish("", q, b"small")
    ch.basic_publish("", q, b"x" * 11)
    assert depth(ch, q) == 0


def test_both_limits_apply(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-length": 3, "x-max-length-bytes": 6})
    for body in (b"aa", b"bb", b"cc", b"dd"):
        ch.basic_publish("", q, body)
    assert drain(ch, q) == [b"bb", b"cc", b"dd"]  # 3 messages / 6 bytes
    for body in (b"1234", b"5678"):
        ch.basic_publish("", q, body)
    assert drain(ch, q) == [b"5678"]


def test_reject_publish_nacks_new_messages_and_keeps_old_ones(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    q = amqp.queue(ch, arguments={"x-max-length": 2, "x-overflow": "reject-publish", "x-dead-letter-exchange": dlx})
    assert publish_all(ch, q, [b"m0", b"m1", b"m2", b"m3"]) == ["ack", "ack", "nack", "nack"]
    assert drain(ch, q) == [b"m0", b"m1"]
    assert drain(ch, dlq) == []  # plain reject-publish does not dead-letter
    assert publish_all(ch, q, [b"m4"]) == ["ack"]  # room again


def test_reject_publish_without_confirms_drops_silently(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn = amqp.connect()
    plain = conn.channel()
    for i in range(3):
        plain.basic_publish("", q, f"m{i}".encode())
    pump([conn], 0.3)
    assert plain.is_open
    assert drain(ch, q) == [b"m0"]


def test_reject_publish_dlx_nacks_and_dead_letters(amqp, ch):
    dlx, dlq = sink(amqp, ch)
    q = amqp.queue(
        ch, arguments={"x-max-length": 2, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx}
    )
    assert publish_all(ch, q, [b"m0", b"m1", b"m2", b"m3"]) == ["ack", "ack", "nack", "nack"]
    assert drain(ch, q) == [b"m0", b"m1"]
    assert dead_letters(ch, dlq, 2) == [(b"m2", "maxlen"), (b"m3", "maxlen")]


def test_reject_publish_with_max_length_zero(amqp, ch):
    q = amqp.queue(ch, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    assert publish_all(ch, q, [b"z"]) == ["nack"]


def test_reject_publish_only_rejects_for_the_full_queue(amqp, ch):
    # a message routed to a full and a non-full queue is nacked (RabbitMQ
    # confirms only when every target queue accepted it) but the other
    # queue still gets it
    x = amqp.exchange(ch, "fanout")
    full = amqp.queue(ch, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    roomy = amqp.queue(ch)
    ch.queue_bind(full, x)
    ch.queue_bind(roomy, x)
    ch.basic_publish(x, "", b"first")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(x, "", b"second")
    assert drain(ch, full) == [b"first"]
    assert drain(ch, roomy) == [b"first", b"second"]
