"""mandatory publishing: unroutable messages come back as basic.return
312 NO_ROUTE; routable ones do not."""

import pika

from helpers import get_one, settle, wait_until


def test_unroutable_mandatory_message_is_returned_312(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    x = amqp.exchange(ch, "direct")
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method, props, body)))

    ch.basic_publish(
        x, "no-binding", b"bounce", properties=pika.BasicProperties(message_id="r1"), mandatory=True
    )
    wait_until(conn, lambda: returned, what="basic.return")
    method, props, body = returned[0]
    assert method.reply_code == 312
    assert method.reply_text == "NO_ROUTE"
    assert method.exchange == x and method.routing_key == "no-binding"
    assert props.message_id == "r1" and body == b"bounce"


def test_mandatory_to_default_exchange_missing_queue_is_returned(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append(method.reply_code))
    ch.basic_publish("", amqp.name("nobody"), b"x", mandatory=True)
    wait_until(conn, lambda: returned, what="basic.return")
    assert returned == [312]


def test_routable_mandatory_message_is_not_returned(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    q = amqp.queue(ch)
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append(method))
    ch.basic_publish("", q, b"fine", mandatory=True)
    assert get_one(ch, q)[2] == b"fine"
    settle(conn)
    assert returned == []


def test_unroutable_without_mandatory_is_silently_dropped(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    x = amqp.exchange(ch, "fanout")
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append(method))
    ch.confirm_delivery()
    ch.basic_publish(x, "", b"lost")  # acked although routed nowhere
    settle(conn)
    assert returned == []
