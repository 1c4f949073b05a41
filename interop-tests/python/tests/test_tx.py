"""Transactions: tx.select/commit/rollback for publishes and acks, and the
tx/confirm mutual exclusion."""

from helpers import drain, expect_channel_error, get_one


def ready(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def test_tx_commit_publishes(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    ch.tx_select()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    observer = amqp.connect().channel()
    assert ready(observer, q) == 0  # not visible before commit
    ch.tx_commit()
    assert ready(observer, q) == 2
    assert drain(observer, q) == [b"a", b"b"]


def test_tx_rollback_discards_publishes(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    ch.tx_select()
    ch.basic_publish("", q, b"discard me")
    ch.tx_rollback()
    ch.basic_publish("", q, b"keep me")
    ch.tx_commit()
    assert drain(ch, q) == [b"keep me"]


def test_tx_acks_commit_and_rollback(amqp):
    setup = amqp.connect().channel()
    setup.confirm_delivery()
    q = amqp.queue(setup)
    setup.basic_publish("", q, b"one")
    setup.basic_publish("", q, b"two")

    ch = amqp.connect().channel()
    ch.tx_select()
    m1, _, _ = get_one(ch, q, auto_ack=False)
    m2, _, _ = get_one(ch, q, auto_ack=False)
    ch.basic_ack(m1.delivery_tag)
    ch.tx_commit()  # "one" is gone for good
    ch.basic_ack(m2.delivery_tag)
    ch.tx_rollback()  # the ack of "two" is discarded: still unacked
    ch.close()  # so closing the channel requeues it

    method, _, body = get_one(setup, q)
    assert body == b"two" and method.redelivered is True
    assert ready(setup, q) == 0


def test_tx_commit_without_select_is_406(amqp):
    ch = amqp.connect().channel()
    text = expect_channel_error(406, ch.tx_commit)
    assert text.startswith("PRECONDITION_FAILED")


def test_confirm_select_on_tx_channel_is_406(amqp):
    ch = amqp.connect().channel()
    ch.tx_select()
    text = expect_channel_error(406, ch.confirm_delivery)
    assert text.startswith("PRECONDITION_FAILED")


def test_tx_select_on_confirm_channel_is_406(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    text = expect_channel_error(406, ch.tx_select)
    assert text.startswith("PRECONDITION_FAILED")
