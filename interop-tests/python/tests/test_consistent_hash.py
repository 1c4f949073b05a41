"""Consistent-hash exchange (x-consistent-hash), as RabbitMQ's
rabbitmq_consistent_hash_exchange plugin defines it (its README and
rabbit_exchange_type_consistent_hash.erl, checked against RabbitMQ 3.10.8 with
the plugin enabled):

- each message goes to exactly one bound queue or exchange, chosen by a hash
  of its routing key (CC/BCC keys do not count); the same key always goes to
  the same queue;
- the binding key is the binding's weight, an integer > 0; the share of keys a
  queue gets follows the weights; other keys are refused with 406;
- the exchange argument hash-header names a header to hash instead,
  hash-property one of message_id, correlation_id, timestamp; both at once, or
  another property, are refused with 406; messages without the header or
  property all go to one queue;
- redeclaring does not compare hash-header/hash-property.

RabbitMQ answers exchange.declare of the type with 503 "COMMAND_INVALID -
unknown exchange type 'x-consistent-hash'" when the plugin is not enabled:
the whole module is skipped then."""

import pika
import pika.exceptions
import pytest

from helpers import drain, expect_channel_error, params, unique

TYPE = "x-consistent-hash"


@pytest.fixture(scope="module", autouse=True)
def plugin_enabled():
    conn = pika.BlockingConnection(params())
    try:
        name = unique("x.chash.probe")
        try:
            conn.channel().exchange_declare(name, TYPE, auto_delete=True)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            if exc.reply_code == 503 and f"unknown exchange type '{TYPE}'" in exc.reply_text:
                pytest.skip(f"the broker has no {TYPE} exchange type (plugin not enabled)")
            raise
        conn.channel().exchange_delete(name)
    finally:
        if conn.is_open:
            conn.close()


@pytest.fixture
def ch(amqp):
    """A confirm-mode channel: after basic_publish returns, routing is done."""
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def chash(amqp, ch, **arguments):
    return amqp.exchange(ch, TYPE, arguments=arguments or None)


def bound(amqp, ch, x, *weights):
    queues = []
    for w in weights:
        q = amqp.queue(ch)
        ch.queue_bind(q, x, routing_key=w)
        queues.append(q)
    return queues


def counts(ch, queues):
    return [ch.queue_declare(q, passive=True).method.message_count for q in queues]


def placement(ch, queues):
    """Empties the queues: which one (index) each body went to."""
    return {body: i for i, q in enumerate(queues) for body in drain(ch, q)}


def publish_keys(ch, x, n, start=0):
    for i in range(start, start + n):
        ch.basic_publish(x, f"key-{i}", f"key-{i}".encode())


def test_each_message_goes_to_one_queue_in_proportion_to_the_weights(amqp, ch):
    x = chash(amqp, ch)
    queues = bound(amqp, ch, x, "1", "1", "2")
    publish_keys(ch, x, 2000)
    got = counts(ch, queues)
    assert sum(got) == 2000, got
    for count, due in zip(got, [500, 500, 1000]):
        assert abs(count - due) < due * 0.25, got


def test_the_same_routing_key_always_goes_to_the_same_queue(amqp, ch):
    x = chash(amqp, ch)
    queues = bound(amqp, ch, x, "1", "1", "1")
    for i in range(30):
        # CC keys are routing keys too, but only the message's own key is hashed.
        ch.basic_publish(x, "same", b"m", pika.BasicProperties(headers={"CC": [f"cc-{i}"]}))
    got = counts(ch, queues)
    assert sorted(got) == [0, 0, 30], got


@pytest.mark.parametrize(
    "key,why",
    [
        ("abc", 'The binding key must be an integer: <<"abc">>'),
        ("", "The binding key must be an integer: <<>>"),
        ("1.5", 'The binding key must be an integer: <<"1.5">>'),
        (" 1", 'The binding key must be an integer: <<" 1">>'),
        ("0", "The binding key must be greater than 0"),
        ("-1", "The binding key must be greater than 0"),
    ],
)
def test_binding_keys_must_be_positive_integers(amqp, ch, key, why):
    x = chash(amqp, ch)
    q = amqp.queue(ch)
    text = expect_channel_error(406, ch.queue_bind, q, x, routing_key=key)
    assert text == f"PRECONDITION_FAILED - {why}"


def test_signs_and_leading_zeros_are_integers_too(amqp, ch):
    x = chash(amqp, ch)
    bound(amqp, ch, x, "+2", "007")


@pytest.mark.warren_only
def test_weights_above_10000_are_refused(amqp, ch):
    """RabbitMQ 4.x caps the weight so; 3.10.8 accepts any, and a huge one
    exhausts the node's memory."""
    x = chash(amqp, ch)
    q = amqp.queue(ch)
    text = expect_channel_error(406, ch.queue_bind, q, x, routing_key="10001")
    assert text == "PRECONDITION_FAILED - The binding key must not exceed 10000"


def test_an_exchange_takes_a_share_like_a_queue(amqp, ch):
    x = chash(amqp, ch)
    fanout = amqp.exchange(ch, "fanout")
    fanned = [amqp.queue(ch), amqp.queue(ch)]
    for q in fanned:
        ch.queue_bind(q, fanout)
    expect_channel_error(406, amqp.channel(ch.connection).exchange_bind, fanout, x, routing_key="x")
    ch.exchange_bind(fanout, x, routing_key="1")
    (direct,) = bound(amqp, ch, x, "1")
    publish_keys(ch, x, 1000)
    a, b, d = counts(ch, fanned + [direct])
    assert a == b and a + d == 1000 and a > 300 and d > 300, (a, b, d)


def test_unbound_and_deleted_queues_leave_the_ring(amqp, ch):
    x = chash(amqp, ch)
    q1, q2 = bound(amqp, ch, x, "1", "1")
    ch.queue_unbind(q1, x, routing_key="1")
    publish_keys(ch, x, 100)
    assert counts(ch, [q1, q2]) == [0, 100]
    ch.queue_delete(q2)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "k", b"nowhere", mandatory=True)


def test_removing_the_last_bound_queue_moves_only_its_keys(amqp, ch):
    # Any queue's removal moves only its own keys in Warren; the plugin's
    # jump-consistent hash promises that only for the last bucket.
    x = chash(amqp, ch)
    queues = bound(amqp, ch, x, "1", "1", "1", "1")
    publish_keys(ch, x, 1000)
    before = placement(ch, queues)
    ch.queue_unbind(queues[3], x, routing_key="1")
    publish_keys(ch, x, 1000)
    after = placement(ch, queues)
    assert len(before) == len(after) == 1000
    assert all(after[k] == q for k, q in before.items() if q != 3)
    assert 150 < sum(1 for q in before.values() if q == 3) < 350


def test_hash_header_routes_by_the_header_and_its_absence_is_one_value(amqp, ch):
    x = chash(amqp, ch, **{"hash-header": "user"})
    queues = bound(amqp, ch, x, "1", "1", "1", "1")
    for i in range(400):
        # 100 users, each under four routing keys.
        ch.basic_publish(x, f"rk-{i}", f"rk-{i}".encode(), pika.BasicProperties(headers={"user": f"u{i % 100}"}))
    placed = placement(ch, queues)
    for i in range(100):
        assert len({placed[f"rk-{i + 100 * k}".encode()] for k in range(4)}) == 1
    assert set(placed.values()) == {0, 1, 2, 3}
    publish_keys(ch, x, 40)
    ch.basic_publish(x, "other", b"other header", pika.BasicProperties(headers={"other": "1"}))
    assert max(counts(ch, queues)) == 41


@pytest.mark.parametrize(
    "prop,value",
    [
        ("message_id", lambda i: f"m{i}"),
        ("correlation_id", lambda i: f"c{i}"),
        ("timestamp", lambda i: 1_700_000_000 + i),
    ],
)
def test_hash_property_routes_by_the_property(amqp, ch, prop, value):
    x = chash(amqp, ch, **{"hash-property": prop})
    queues = bound(amqp, ch, x, "1", "1", "1", "1")
    for i in range(400):
        ch.basic_publish(x, f"rk-{i}", f"rk-{i}".encode(), pika.BasicProperties(**{prop: value(i % 100)}))
    placed = placement(ch, queues)
    for i in range(100):
        assert len({placed[f"rk-{i + 100 * k}".encode()] for k in range(4)}) == 1
    assert set(placed.values()) == {0, 1, 2, 3}
    publish_keys(ch, x, 40)
    assert max(counts(ch, queues)) == 40


@pytest.mark.parametrize(
    "arguments,why",
    [
        ({"hash-header": "h", "hash-property": "message_id"}, "hash-header and hash-property are mutually exclusive"),
        ({"hash-header": "h", "hash-property": "nope"}, "hash-header and hash-property are mutually exclusive"),
        ({"hash-property": "app_id"}, "Unsupported property: app_id"),
        ({"hash-property": ""}, "Unsupported property: "),
    ],
)
def test_hash_arguments_are_checked(amqp, ch, arguments, why):
    name = unique("x.chash.bad")
    text = expect_channel_error(406, ch.exchange_declare, name, TYPE, arguments=arguments)
    assert text == f"PRECONDITION_FAILED - {why}"


def test_redeclare_compares_the_type_but_not_the_hash_arguments(amqp, ch):
    x = chash(amqp, ch, **{"hash-header": "h"})
    ch.exchange_declare(x, TYPE, arguments={"hash-property": "timestamp"})
    text = expect_channel_error(406, ch.exchange_declare, x, "direct")
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': "
        "received 'direct' but current is ''x-consistent-hash''"
    )
