"""Tutorial 6: RPC over AMQP -- requests carry reply_to + correlation_id;
replies go through the default exchange.  Two callback styles: an exclusive
server-named callback queue, and RabbitMQ's direct reply-to pseudo queue."""

import uuid

import pika

from helpers import expect_channel_error, get_one, wait_until


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def start_rpc_server(amqp, queue_name):
    """A fib() server on its own connection; returns that connection."""
    conn = amqp.connect()
    ch = conn.channel()
    amqp.queue(ch, name=queue_name)
    ch.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body):
        answer = str(fib(int(body))).encode()
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=answer,
        )
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue_name, on_request)
    return conn


def pump(*conns):
    def step():
        for c in conns:
            c.process_data_events(time_limit=0)
        return False

    return step


def test_rpc_with_exclusive_callback_queue(amqp):
    rpc_queue = amqp.name("rpc")
    server_conn = start_rpc_server(amqp, rpc_queue)

    client_conn = amqp.connect()
    client = client_conn.channel()
    callback_queue = client.queue_declare("", exclusive=True).method.queue
    responses = {}

    def on_response(ch, method, props, body):
        responses[props.correlation_id] = body

    client.basic_consume(callback_queue, on_response, auto_ack=True)

    calls = {}
    for n in (0, 1, 10, 30):
        corr = str(uuid.uuid4())
        calls[corr] = n
        client.basic_publish(
            "",
            rpc_queue,
            str(n).encode(),
            properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr),
        )

    step = pump(server_conn)
    wait_until(client_conn, lambda: step() or len(responses) == len(calls), what="all RPC replies")
    for corr, n in calls.items():
        assert responses[corr] == str(fib(n)).encode()


def test_rpc_with_direct_reply_to(amqp):
    rpc_queue = amqp.name("rpc")
    server_conn = start_rpc_server(amqp, rpc_queue)

    client_conn = amqp.connect()
    client = client_conn.channel()
    replies = []

    def on_reply(ch, method, props, body):
        replies.append((props.correlation_id, body))

    # Must consume (no-ack) from the pseudo queue before publishing with it.
    client.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
    client.basic_publish(
        "",
        rpc_queue,
        b"20",
        properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c-20"),
    )
    step = pump(server_conn)
    wait_until(client_conn, lambda: step() or replies, what="direct reply-to reply")
    assert replies == [("c-20", str(fib(20)).encode())]


def test_direct_reply_to_server_sees_generated_reply_address(amqp):
    rpc_queue = amqp.name("rpc")
    ch_server = amqp.connect().channel()
    amqp.queue(ch_server, name=rpc_queue)

    client_conn = amqp.connect()
    client = client_conn.channel()
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(b), auto_ack=True)
    client.basic_publish(
        "", rpc_queue, b"ping", properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")
    )

    _, props, body = get_one(ch_server, rpc_queue)
    assert body == b"ping"
    # The broker rewrites reply_to into a routable per-channel address.
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    ch_server.basic_publish("", props.reply_to, b"pong")
    wait_until(client_conn, lambda: replies, what="reply via generated address")
    assert replies == [b"pong"]


def test_direct_reply_to_without_consumer_is_refused(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)

    def publish_and_sync():
        ch.basic_publish("", q, b"x", properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
        ch.queue_declare(q, passive=True)  # synchronous round trip to surface the error

    text = expect_channel_error(406, publish_and_sync)
    assert text.startswith("PRECONDITION_FAILED")
