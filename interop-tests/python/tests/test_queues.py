"""Queue lifecycle: declare-ok counts, passive declares, redeclare
preconditions, exclusivity, purge and delete (incl. if-unused/if-empty)."""

import pika
import pytest

from helpers import expect_channel_error, wait_until


def publish_confirmed(ch, queue, n, prefix="m"):
    for i in range(n):
        ch.basic_publish("", queue, f"{prefix}{i}".encode())


@pytest.fixture
def cch(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def test_declare_ok_reports_message_and_consumer_counts(amqp, cch):
    q = amqp.queue(cch)
    ok = cch.queue_declare(q)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)

    publish_confirmed(cch, q, 3)
    ok = cch.queue_declare(q, passive=True)
    assert (ok.method.message_count, ok.method.consumer_count) == (3, 0)

    consumer_conn = amqp.connect()
    consumer = consumer_conn.channel()
    consumer.basic_qos(prefetch_count=1)
    got = []
    consumer.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))  # holds one unacked
    wait_until(consumer_conn, lambda: got, what="one delivery")
    ok = cch.queue_declare(q, passive=True)
    # message_count counts only messages ready for delivery
    assert (ok.method.message_count, ok.method.consumer_count) == (2, 1)


def test_server_named_queue(amqp, cch):
    ok = cch.queue_declare("", exclusive=True)
    name = amqp.track_queue(ok.method.queue)
    assert name and ok.method.message_count == 0 and ok.method.consumer_count == 0
    cch.basic_publish("", name, b"hi")
    assert cch.queue_declare(name, passive=True).method.message_count == 1


def test_passive_declare_of_missing_queue_is_404(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    name = amqp.name("missing")
    text = expect_channel_error(404, ch.queue_declare, name, passive=True)
    assert text.startswith("NOT_FOUND")
    assert name in text
    assert ch.is_closed and conn.is_open
    # the connection is still usable
    conn.channel().queue_declare(amqp.queue(conn.channel()), passive=True)


def test_redeclare_with_different_durable_flag_fails(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch, durable=False)
    text = expect_channel_error(406, ch.queue_declare, q, durable=True)
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg")
    assert "durable" in text


def test_redeclare_with_different_arguments_fails(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch, arguments={"x-message-ttl": 60000})
    text = expect_channel_error(406, ch.queue_declare, q, arguments={"x-message-ttl": 1000})
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg")
    assert "x-message-ttl" in text


def test_redeclare_with_same_attributes_is_ok(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch, durable=True, arguments={"x-max-length": 10})
    ok = ch.queue_declare(q, durable=True, arguments={"x-max-length": 10})
    assert ok.method.queue == q
    # passive declare ignores the attributes
    assert ch.queue_declare(q, passive=True, durable=False).method.queue == q


def test_exclusive_queue_is_locked_for_other_connections(amqp):
    owner = amqp.connect().channel()
    q = amqp.queue(owner, exclusive=True)

    other_conn = amqp.connect()
    text = expect_channel_error(405, other_conn.channel().queue_declare, q)
    assert text.startswith("RESOURCE_LOCKED")
    text = expect_channel_error(405, other_conn.channel().queue_declare, q, passive=True)
    assert text.startswith("RESOURCE_LOCKED")
    text = expect_channel_error(
        405, other_conn.channel().basic_consume, q, lambda *a: None, auto_ack=True
    )
    assert text.startswith("RESOURCE_LOCKED")
    # the owner still uses it freely, from any of its channels
    owner.connection.channel().basic_publish("", q, b"mine")


def test_purge_returns_count(amqp, cch):
    q = amqp.queue(cch)
    publish_confirmed(cch, q, 5)
    assert cch.queue_purge(q).method.message_count == 5
    assert cch.queue_purge(q).method.message_count == 0
    assert cch.queue_declare(q, passive=True).method.message_count == 0


def test_delete_returns_count_and_removes_queue(amqp, cch):
    q = amqp.queue(cch)
    publish_confirmed(cch, q, 4)
    assert cch.queue_delete(q).method.message_count == 4
    text = expect_channel_error(404, cch.queue_declare, q, passive=True)
    assert text.startswith("NOT_FOUND")


def test_delete_if_empty(amqp, cch):
    q = amqp.queue(cch)
    publish_confirmed(cch, q, 1)
    text = expect_channel_error(406, cch.queue_delete, q, if_empty=True)
    assert text.startswith("PRECONDITION_FAILED")

    ch = amqp.connect().channel()
    ch.queue_purge(q)
    assert ch.queue_delete(q, if_empty=True).method.message_count == 0


def test_delete_if_unused(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    tag = ch.basic_consume(q, lambda *a: None, auto_ack=True)
    other = amqp.connect().channel()
    text = expect_channel_error(406, other.queue_delete, q, if_unused=True)
    assert text.startswith("PRECONDITION_FAILED")

    ch.basic_cancel(tag)
    assert ch.queue_delete(q, if_unused=True).method.message_count == 0


def test_auto_delete_queue_goes_away_after_last_consumer(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch, auto_delete=True)
    tag = ch.basic_consume(q, lambda *a: None, auto_ack=True)
    ch.basic_cancel(tag)
    probe = amqp.connect()

    def gone():
        try:
            probe.channel().queue_declare(q, passive=True)
            return False
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 404
            return True

    wait_until(probe, gone, what="auto-delete queue removal")
