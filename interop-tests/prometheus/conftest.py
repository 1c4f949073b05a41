"""Fixtures of the Prometheus interop suite: PROM_URL (the metrics listener, default
http://127.0.0.1:15692) and AMQP_URL (the same broker's AMQP, for traffic)."""

import shutil
import uuid

import pika
import pytest
import requests

import promlib


def pytest_report_header(config):
    return [f"PROM_URL: {promlib.PROM_URL}", f"AMQP_URL: {promlib.AMQP_URL}", f"promtool: {promlib.PROMTOOL}"]


def pytest_sessionstart(session):
    if shutil.which(promlib.PROMTOOL) is None:
        pytest.exit(f"{promlib.PROMTOOL} not found (Debian: apt-get install prometheus)", returncode=3)
    try:
        requests.get(promlib.PROM_URL + "/metrics", timeout=15).raise_for_status()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"no metrics at {promlib.PROM_URL}/metrics: {exc!r}", returncode=3)


@pytest.fixture
def traffic():
    """A queue with some history and a live consumer: publishes (confirmed), a get, an ack, a
    mandatory return; yields (queue name, ready count left), then deletes what it made."""
    conn = pika.BlockingConnection(pika.URLParameters(promlib.AMQP_URL))
    ch = conn.channel()
    ch.confirm_delivery()
    q = f"prom-it-{uuid.uuid4().hex[:10]}"
    ch.queue_declare(q, auto_delete=False)
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    try:
        ch.basic_publish("", f"{q}-nowhere", b"x", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(q, lambda *a: None)  # holds one unacked delivery
    conn.process_data_events(time_limit=0.5)
    yield q, 3
    try:
        conn.close()
    finally:
        cleanup = pika.BlockingConnection(pika.URLParameters(promlib.AMQP_URL))
        cleanup.channel().queue_delete(q)
        cleanup.close()
