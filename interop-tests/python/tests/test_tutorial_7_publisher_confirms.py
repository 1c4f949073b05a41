"""Tutorial 7: publisher confirms -- one at a time, in batches, and
asynchronously (tracking outstanding delivery tags incl. multiple=true)."""

import pika
import pytest

from helpers import params

N = 200


def test_confirms_individually(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    ch.confirm_delivery()
    for i in range(50):
        # BlockingChannel waits for basic.ack here; a nack would raise.
        ch.basic_publish("", q, f"m{i}".encode())
    assert ch.queue_declare(q, passive=True).method.message_count == 50


def test_confirm_select_ok_and_unroutable_mandatory_is_returned_then_acked(amqp):
    ch = amqp.connect().channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("", amqp.name("missing"), b"x", mandatory=True)
    # Unroutable without mandatory: simply confirmed.
    ch.basic_publish("", amqp.name("missing"), b"y")


class AsyncConfirmPublisher:
    """Publishes with SelectConnection and tracks confirms by delivery tag."""

    def __init__(self, queue, total, batch_size=None, timeout=20):
        self.queue = queue
        self.total = total
        self.batch_size = batch_size
        self.timeout = timeout
        self.next_tag = 0
        self.outstanding = set()
        self.acked = 0
        self.nacked = 0
        self.multiple_seen = False
        self.published = 0
        self.error = None
        self.conn = None
        self.ch = None

    def run(self):
        self.conn = pika.SelectConnection(
            params(),
            on_open_callback=self._on_open,
            on_open_error_callback=self._fail,
            on_close_callback=lambda c, reason: c.ioloop.stop(),
        )
        self.conn.ioloop.call_later(self.timeout, lambda: self._fail(self.conn, "timeout"))
        self.conn.ioloop.start()
        if self.error:
            raise AssertionError(f"async publisher failed: {self.error}")

    def _fail(self, _conn, err):
        self.error = err
        try:
            self.conn.close()
        except Exception:
            self.conn.ioloop.stop()

    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch):
        self.ch = ch
        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _f: self._publish_some())

    def _publish_some(self):
        count = self.total - self.published
        if self.batch_size:
            count = min(count, self.batch_size)
        for _ in range(count):
            self.ch.basic_publish("", self.queue, f"msg {self.published}".encode())
            self.published += 1
            self.next_tag += 1
            self.outstanding.add(self.next_tag)

    def _on_confirm(self, frame):
        method = frame.method
        tags = (
            {t for t in self.outstanding if t <= method.delivery_tag}
            if method.multiple
            else {method.delivery_tag}
        )
        if method.multiple:
            self.multiple_seen = True
        if isinstance(method, pika.spec.Basic.Ack):
            self.acked += len(tags)
        else:
            self.nacked += len(tags)
        self.outstanding -= tags
        if not self.outstanding:
            if self.published < self.total:
                self._publish_some()  # batch mode: next batch after the whole batch is confirmed
            else:
                self.conn.close()


def test_confirms_in_batches(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    pub = AsyncConfirmPublisher(q, total=N, batch_size=50)
    pub.run()
    assert pub.acked == N and pub.nacked == 0
    assert ch.queue_declare(q, passive=True).method.message_count == N


def test_confirms_asynchronously(amqp):
    ch = amqp.connect().channel()
    q = amqp.queue(ch)
    pub = AsyncConfirmPublisher(q, total=N)
    pub.run()
    assert pub.acked == N and pub.nacked == 0
    assert not pub.outstanding
    assert ch.queue_declare(q, passive=True).method.message_count == N
