"""Tutorial 3: publish/subscribe with a fanout exchange and exclusive,
server-named subscriber queues."""

from helpers import expect_channel_error, wait_until


def test_fanout_to_exclusive_server_named_queues(amqp):
    pub = amqp.connect().channel()
    logs = amqp.exchange(pub, "fanout")

    subscribers = []
    for _ in range(3):
        conn = amqp.connect()
        ch = conn.channel()
        ch.exchange_declare(logs, exchange_type="fanout")
        ok = ch.queue_declare("", exclusive=True)
        name = ok.method.queue
        assert name  # server generated a name
        ch.queue_bind(name, logs)
        got = []
        ch.basic_consume(name, lambda c, m, p, body, got=got: got.append(body), auto_ack=True)
        subscribers.append((conn, name, got))

    names = [name for _, name, _ in subscribers]
    assert len(set(names)) == 3

    pub.basic_publish(logs, "ignored-by-fanout", b"log line 1")
    pub.basic_publish(logs, "", b"log line 2")
    for conn, _, got in subscribers:
        wait_until(conn, lambda got=got: len(got) == 2, what="both log lines")
        assert got == [b"log line 1", b"log line 2"]


def test_exclusive_queue_deleted_when_its_connection_closes(amqp):
    conn = amqp.connect()
    ch = conn.channel()
    name = ch.queue_declare("", exclusive=True).method.queue
    conn.close()

    other = amqp.connect().channel()
    text = expect_channel_error(404, other.queue_declare, name, passive=True)
    assert text.startswith("NOT_FOUND")
