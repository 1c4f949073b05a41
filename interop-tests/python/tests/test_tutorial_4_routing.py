"""Tutorial 4: routing by severity with a direct exchange (multiple bindings,
same key bound by several queues)."""

from helpers import drain


def test_direct_exchange_routing_by_severity(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()  # confirmed => routed, so drain() sees everything
    logs = amqp.exchange(ch, "direct")
    to_disk = amqp.queue(ch, name="", exclusive=True)
    to_screen = amqp.queue(ch, name="", exclusive=True)
    ch.queue_bind(to_disk, logs, routing_key="error")
    for severity in ("info", "warning", "error"):
        ch.queue_bind(to_screen, logs, routing_key=severity)

    for severity in ("info", "warning", "error", "debug"):
        ch.basic_publish(logs, severity, f"{severity}: something".encode())

    assert drain(ch, to_disk) == [b"error: something"]
    assert drain(ch, to_screen) == [b"info: something", b"warning: something", b"error: something"]


def test_unbind_stops_routing(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    x = amqp.exchange(ch, "direct")
    q = amqp.queue(ch)
    ch.queue_bind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"one")
    ch.queue_unbind(q, x, routing_key="k")
    ch.basic_publish(x, "k", b"two")
    assert drain(ch, q) == [b"one"]
