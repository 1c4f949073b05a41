"""Tutorial 1: one producer, one consumer, a named queue on the default exchange."""

from helpers import wait_until


def test_hello_world_publish_then_consume(amqp):
    producer = amqp.connect().channel()
    queue = amqp.queue(producer)
    producer.basic_publish(exchange="", routing_key=queue, body=b"Hello World!")

    consumer_conn = amqp.connect()
    consumer = consumer_conn.channel()
    amqp.queue(consumer, name=queue)  # both sides declare: idempotent
    received = []
    consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    wait_until(consumer_conn, lambda: received, what="hello message")
    assert received == [b"Hello World!"]


def test_hello_world_consumer_first(amqp):
    consumer_conn = amqp.connect()
    consumer = consumer_conn.channel()
    queue = amqp.queue(consumer)
    received = []
    consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)

    producer = amqp.connect().channel()
    for i in range(3):
        producer.basic_publish("", queue, f"hello {i}".encode())
    wait_until(consumer_conn, lambda: len(received) == 3, what="3 messages")
    assert received == [b"hello 0", b"hello 1", b"hello 2"]  # FIFO per queue
