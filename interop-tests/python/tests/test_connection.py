"""Connection-level behaviour: authentication, vhost access, heartbeats,
channels."""

import pika
import pytest

from helpers import get_one, params


def test_wrong_password_is_refused_with_403(amqp):
    p = params()
    p.credentials = pika.PlainCredentials(p.credentials.username, "definitely-not-the-password")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(p)
    text = str(info.value)
    assert "403" in text and "ACCESS_REFUSED" in text


def test_unknown_vhost_is_530_not_allowed(amqp):
    p = params()
    p.virtual_host = amqp.name("no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(p)
    text = str(info.value)
    assert "530" in text and "NOT_ALLOWED" in text


def test_heartbeat_negotiated_and_idle_connection_survives(amqp):
    conn = amqp.connect(heartbeat=2)
    ch = conn.channel()
    q = amqp.queue(ch)
    impl = conn._impl  # negotiated values live on the underlying connection
    assert impl.params.heartbeat == 2
    conn.sleep(6)  # idle, but pika keeps servicing I/O (heartbeats)
    assert conn.is_open
    checker = getattr(impl, "_heartbeat_checker", None)
    if checker is not None:
        # the broker sent heartbeat frames while we were idle
        assert checker._heartbeat_frames_received >= 1
    ch.basic_publish("", q, b"still alive")
    assert get_one(ch, q)[2] == b"still alive"


def test_server_properties_and_tune(amqp):
    conn = amqp.connect()
    impl = conn._impl
    caps = impl.server_properties.get("capabilities", {})
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify"):
        assert caps.get(cap) is True, cap
    assert impl.params.frame_max >= 4096
    assert impl.params.channel_max > 0


def test_many_channels_on_one_connection(amqp):
    conn = amqp.connect()
    channels = [conn.channel() for _ in range(20)]
    assert len({c.channel_number for c in channels}) == 20
    for c in channels[::2]:
        c.close()
    q = amqp.queue(channels[1])
    channels[3].confirm_delivery()
    channels[3].basic_publish("", q, b"x")
    assert channels[5].queue_declare(q, passive=True).method.message_count == 1


def test_channel_error_leaves_other_channels_open(amqp):
    conn = amqp.connect()
    good = conn.channel()
    bad = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        bad.queue_declare(amqp.name("missing"), passive=True)
    assert good.is_open and conn.is_open
    q = amqp.queue(good)
    assert good.queue_declare(q, passive=True).method.queue == q
