"""Sender-selected distribution: CC and BCC headers add routing keys; BCC is
removed before delivery."""

import pika

from helpers import drain


def test_cc_and_bcc_on_default_exchange(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    to_q, cc_q, bcc_q = amqp.queue(ch), amqp.queue(ch), amqp.queue(ch)
    ch.basic_publish(
        "",
        to_q,
        b"memo",
        properties=pika.BasicProperties(headers={"CC": [cc_q], "BCC": [bcc_q], "keep": "me"}),
    )
    for q in (to_q, cc_q, bcc_q):
        method, props, body = ch.basic_get(q, auto_ack=True)
        assert body == b"memo", q
        assert "BCC" not in props.headers, q
        assert props.headers["CC"] == [cc_q]
        assert props.headers["keep"] == "me"
        assert method.routing_key == to_q  # the original key is kept


def test_cc_on_direct_exchange(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    x = amqp.exchange(ch, "direct")
    q_main, q_cc, q_other = amqp.queue(ch), amqp.queue(ch), amqp.queue(ch)
    ch.queue_bind(q_main, x, routing_key="main")
    ch.queue_bind(q_cc, x, routing_key="copy")
    ch.queue_bind(q_other, x, routing_key="other")
    ch.basic_publish(x, "main", b"m", properties=pika.BasicProperties(headers={"CC": ["copy"]}))
    ch.basic_publish(x, "nowhere", b"bcc only", properties=pika.BasicProperties(headers={"BCC": ["copy"]}))
    assert drain(ch, q_main) == [b"m"]
    assert drain(ch, q_cc) == [b"m", b"bcc only"]
    assert drain(ch, q_other) == []
