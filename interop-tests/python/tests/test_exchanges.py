"""Exchange behaviour: default exchange, predeclared amq.* exchanges, headers
exchange matching, exchange-to-exchange bindings, alternate exchanges."""

import pika
import pytest

from helpers import drain, expect_channel_error, wait_channel_closed


@pytest.fixture
def cch(amqp):
    """A confirm-mode channel: after basic_publish returns, routing is done."""
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    return ch


def test_default_exchange_routes_by_queue_name(amqp, cch):
    q1, q2 = amqp.queue(cch), amqp.queue(cch)
    cch.basic_publish("", q1, b"to q1")
    cch.basic_publish("", q2, b"to q2")
    cch.basic_publish("", amqp.name("nobody"), b"dropped")
    assert drain(cch, q1) == [b"to q1"]
    assert drain(cch, q2) == [b"to q2"]


def test_default_exchange_cannot_be_bound_to(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    text = expect_channel_error(403, ch.queue_bind, q, "", routing_key="x")
    assert text.startswith("ACCESS_REFUSED")


@pytest.mark.parametrize(
    "name,kind",
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_predeclared_exchanges_exist_and_route(amqp, cch, name, kind):
    cch.exchange_declare(name, exchange_type=kind, passive=True)
    # Re-declaring with the same (durable) attributes is allowed too.
    cch.exchange_declare(name, exchange_type=kind, durable=True)
    q = amqp.queue(cch)
    key = amqp.name("key")
    tag = amqp.name("tag")
    bind_args = {"x-match": "all", "tag": tag} if kind == "headers" else None
    cch.queue_bind(q, name, routing_key=key, arguments=bind_args)
    try:
        cch.basic_publish(name, key, b"via " + name.encode(), properties=pika.BasicProperties(headers={"tag": tag}))
        assert drain(cch, q) == [b"via " + name.encode()]
    finally:
        cch.queue_unbind(q, name, routing_key=key, arguments=bind_args)


def test_headers_exchange_x_match_all_and_any(amqp, cch):
    x = amqp.exchange(cch, "headers")
    q_all = amqp.queue(cch)
    q_any = amqp.queue(cch)
    q_default = amqp.queue(cch)
    cch.queue_bind(q_all, x, arguments={"x-match": "all", "format": "pdf", "type": "report"})
    cch.queue_bind(q_any, x, arguments={"x-match": "any", "format": "pdf", "type": "log"})
    cch.queue_bind(q_default, x, arguments={"format": "zip"})  # x-match defaults to all

    def pub(body, headers):
        cch.basic_publish(x, "routing-key-is-ignored", body, properties=pika.BasicProperties(headers=headers))

    pub(b"pdf report", {"format": "pdf", "type": "report"})
    pub(b"pdf report extra", {"format": "pdf", "type": "report", "extra": 1})
    pub(b"pdf only", {"format": "pdf"})
    pub(b"log only", {"type": "log"})
    pub(b"zip", {"format": "zip"})
    pub(b"nothing", {"other": "value"})
    pub(b"no headers", None)

    assert drain(cch, q_all) == [b"pdf report", b"pdf report extra"]
    assert drain(cch, q_any) == [b"pdf report", b"pdf report extra", b"pdf only", b"log only"]
    assert drain(cch, q_default) == [b"zip"]


def test_headers_exchange_typed_values(amqp, cch):
    x = amqp.exchange(cch, "headers")
    q = amqp.queue(cch)
    cch.queue_bind(q, x, arguments={"x-match": "all", "count": 42, "flag": True})
    cch.basic_publish(x, "", b"match", properties=pika.BasicProperties(headers={"count": 42, "flag": True}))
    cch.basic_publish(x, "", b"wrong value", properties=pika.BasicProperties(headers={"count": 41, "flag": True}))
    assert drain(cch, q) == [b"match"]


def test_exchange_to_exchange_binding(amqp, cch):
    source = amqp.exchange(cch, "direct")
    middle = amqp.exchange(cch, "topic")
    sink = amqp.exchange(cch, "fanout")
    q_middle = amqp.queue(cch)
    q_sink = amqp.queue(cch)
    cch.exchange_bind(destination=middle, source=source, routing_key="orders.eu.new")
    cch.exchange_bind(destination=sink, source=middle, routing_key="orders.#")
    cch.queue_bind(q_middle, middle, routing_key="*.eu.*")
    cch.queue_bind(q_sink, sink)

    cch.basic_publish(source, "orders.eu.new", b"first")
    cch.basic_publish(source, "orders.us.new", b"not bound at source")
    assert drain(cch, q_middle) == [b"first"]
    assert drain(cch, q_sink) == [b"first"]

    cch.exchange_unbind(destination=sink, source=middle, routing_key="orders.#")
    cch.basic_publish(source, "orders.eu.new", b"second")
    assert drain(cch, q_middle) == [b"second"]
    assert drain(cch, q_sink) == []


def test_exchange_binding_cycle_delivers_once(amqp, cch):
    a = amqp.exchange(cch, "fanout")
    b = amqp.exchange(cch, "fanout")
    cch.exchange_bind(destination=b, source=a)
    cch.exchange_bind(destination=a, source=b)
    q = amqp.queue(cch)
    cch.queue_bind(q, b)
    cch.basic_publish(a, "", b"loop")
    assert drain(cch, q) == [b"loop"]


def test_alternate_exchange_receives_unroutable(amqp, cch):
    ae = amqp.exchange(cch, "fanout")
    main = amqp.exchange(cch, "direct", arguments={"alternate-exchange": ae})
    q_main, q_ae = amqp.queue(cch), amqp.queue(cch)
    cch.queue_bind(q_main, main, routing_key="known")
    cch.queue_bind(q_ae, ae)

    cch.basic_publish(main, "known", b"routed")
    # mandatory is satisfied by the alternate exchange: no basic.return
    cch.basic_publish(main, "unknown", b"unroutable", mandatory=True)
    assert drain(cch, q_main) == [b"routed"]
    assert drain(cch, q_ae) == [b"unroutable"]


def test_declare_exchange_with_reserved_amq_prefix_is_refused(amqp):
    ch = amqp.connect().channel()
    name = "amq." + amqp.name("foo")
    text = expect_channel_error(403, ch.exchange_declare, name, exchange_type="direct")
    assert text.startswith("ACCESS_REFUSED")
    assert name in text


def test_redeclare_exchange_with_different_type_fails(amqp):
    ch = amqp.connect().channel()
    x = amqp.exchange(ch, "direct")
    text = expect_channel_error(406, ch.exchange_declare, x, exchange_type="fanout")
    assert text.startswith("PRECONDITION_FAILED - inequivalent arg 'type'")


def test_passive_declare_of_missing_exchange_is_404(amqp):
    ch = amqp.connect().channel()
    text = expect_channel_error(404, ch.exchange_declare, amqp.name("nox"), passive=True)
    assert text.startswith("NOT_FOUND")


def test_publish_to_missing_exchange_closes_channel_404(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    ch.basic_publish(amqp.name("nox"), "k", b"x")
    text = wait_channel_closed(ch, 404)
    assert text.startswith("NOT_FOUND")
    assert conn.is_open  # only the channel is closed
