"""Helpers shared by the pika interop tests (imported as ``helpers``)."""

import os
import time
import uuid

import pika


AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

# Default wait for something that is expected to happen "soon".
WAIT_S = 10.0


def params(**overrides):
    """pika connection parameters for AMQP_URL with attribute overrides."""
    p = pika.URLParameters(AMQP_URL)
    p.connection_attempts = 1
    p.socket_timeout = 10
    p.blocked_connection_timeout = 30
    for key, value in overrides.items():
        setattr(p, key, value)
    return p


def unique(kind):
    return f"interop.py.{kind}.{uuid.uuid4().hex[:12]}"


def wait_until(conn, predicate, timeout=WAIT_S, what="condition"):
    """Pump the connection's I/O until predicate() is true or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        conn.process_data_events(time_limit=min(0.05, remaining))


def settle(conn, seconds=0.3):
    """Let in-flight deliveries arrive (used only before asserting 'no more')."""
    conn.process_data_events(time_limit=seconds)


def get_one(ch, queue, timeout=WAIT_S, auto_ack=True):
    """basic.get, retried until a message shows up (routing may be async)."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            raise AssertionError(f"no message arrived in {queue!r} within {timeout}s")
        ch.connection.sleep(0.02)


def drain(ch, queue):
    """basic.get until get-empty; returns the bodies (auto-acked)."""
    bodies = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


class Amqp:
    """Per-test helper: connections, unique names and cleanup."""

    def __init__(self):
        self._connections = []
        self._queues = []
        self._exchanges = []

    # -- connections -------------------------------------------------------
    def connect(self, **overrides):
        conn = pika.BlockingConnection(params(**overrides))
        self._connections.append(conn)
        return conn

    def channel(self, conn=None):
        if conn is None:
            conn = self.connect()
        return conn.channel()

    # -- names and declarations ---------------------------------------------
    def name(self, kind="q"):
        return unique(kind)

    def track_queue(self, name):
        self._queues.append(name)
        return name

    def track_exchange(self, name):
        self._exchanges.append(name)
        return name

    def queue(self, ch, name=None, **kwargs):
        """Declare a queue (unique name unless given) and track it for cleanup.

        name="" asks the server for a generated name."""
        if name is None:
            name = self.name("q")
        ok = ch.queue_declare(queue=name, **kwargs)
        return self.track_queue(ok.method.queue)

    def exchange(self, ch, exchange_type="direct", name=None, **kwargs):
        if name is None:
            name = self.name(f"x.{exchange_type}")
        ch.exchange_declare(exchange=name, exchange_type=exchange_type, **kwargs)
        return self.track_exchange(name)

    # -- teardown -----------------------------------------------------------
    def cleanup(self):
        # Close the test's own connections first: that cancels its consumers
        # and drops its exclusive queues, so the deletes below cannot clash.
        for conn in self._connections:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        if not (self._queues or self._exchanges):
            return
        try:
            conn = pika.BlockingConnection(params())
        except Exception:  # broker gone: nothing we can do
            return
        ch = conn.channel()
        for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
            for name in names:
                try:
                    if kind == "queue":
                        ch.queue_delete(name)
                    else:
                        ch.exchange_delete(name)
                except Exception:
                    if ch.is_closed:
                        ch = conn.channel()
        try:
            conn.close()
        except Exception:
            pass


def expect_channel_error(code, fn, *args, **kwargs):
    """Run fn, expect the broker to close the channel with `code`; return the reply text."""
    import pika.exceptions

    try:
        fn(*args, **kwargs)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == code, f"expected {code}, got {exc.reply_code} {exc.reply_text!r}"
        return exc.reply_text
    raise AssertionError(f"expected channel close {code}, but the call succeeded")


def wait_channel_closed(ch, code, timeout=WAIT_S):
    """For asynchronous errors (publish, ack): pump until the broker closes the
    channel, then check the close code; returns the reply text."""
    import pika.exceptions

    deadline = time.monotonic() + timeout
    while ch.is_open:
        if time.monotonic() > deadline:
            raise AssertionError(f"channel still open after {timeout}s, expected close {code}")
        ch.connection.process_data_events(time_limit=0.05)
    # BlockingChannel keeps the broker's channel.close as its closing reason.
    reason = ch._closing_reason
    assert isinstance(reason, pika.exceptions.ChannelClosedByBroker), repr(reason)
    assert reason.reply_code == code, f"expected {code}, got {reason.reply_code} {reason.reply_text!r}"
    return reason.reply_text
