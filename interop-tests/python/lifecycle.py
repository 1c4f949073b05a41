"""Helpers for the message-lifecycle tests (TTL, dead-lettering, limits,
priorities, consumer selection, delays, deduplication)."""

import calendar
import time

import pika.exceptions

from helpers import WAIT_S


def depth(ch, queue):
    """Ready messages in `queue` (queue.declare-ok message_count, passive)."""
    return ch.queue_declare(queue, passive=True).method.message_count


def wait_depth(ch, queue, n, timeout=WAIT_S):
    """Wait until the ready count of `queue` is `n` (TTL expiry, dead-lettering)."""
    deadline = time.monotonic() + timeout
    while True:
        got = depth(ch, queue)
        if got == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue!r} still has {got} ready messages after {timeout}s, expected {n}")
        ch.connection.sleep(0.02)


def exists(conn, queue):
    """Passive declare on a throwaway channel: False on 404."""
    ch = conn.channel()
    try:
        ch.queue_declare(queue, passive=True)
        ch.close()
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, (exc.reply_code, exc.reply_text)
        return False


def wait_gone(conn, queue, timeout=WAIT_S, poll=0.05):
    """Wait for a queue to be deleted. Each check is a passive declare, which
    counts as a use and restarts an x-expires timer: for such queues pass a
    `poll` interval longer than x-expires."""
    deadline = time.monotonic() + timeout
    while True:
        conn.sleep(poll)
        if not exists(conn, queue):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"queue {queue!r} still exists after {timeout}s")


def pump(conns, seconds):
    """Let deliveries arrive on several blocking connections for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for conn in conns:
            conn.process_data_events(time_limit=0.01)


def pump_until(conns, predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        for conn in conns:
            conn.process_data_events(time_limit=0.01)


def is_recent(timestamp, slack_s=300):
    """An AMQP timestamp (pika: naive UTC datetime, whole seconds) close to now."""
    return abs(calendar.timegm(timestamp.timetuple()) - time.time()) <= slack_s
