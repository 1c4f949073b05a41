"""Fixtures of the pika TLS suite (see tlslib for the environment it reads)."""

import os
import signal

import pika
import pytest
import requests

import tlslib

TEST_TIMEOUT_S = int(os.environ.get("INTEROP_TEST_TIMEOUT", "60"))


def pytest_report_header(config):
    return [f"AMQPS_URL: {tlslib.AMQPS_URL}", f"MGMT_URL: {tlslib.MGMT_URL}", f"TLS_PKI: {tlslib.PKI}"]


def pytest_sessionstart(session):
    """Fail fast when the certificates, the TLS listener or the management API are missing."""
    if not tlslib.PKI or not os.path.exists(tlslib.pki("ca.pem")):
        pytest.exit(f"TLS_PKI ({tlslib.PKI!r}) has no ca.pem: run make-pki.sh (run.sh does)", returncode=3)
    try:
        tlslib.connect(tlslib.context()).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable broker"
        pytest.exit(f"cannot open an AMQP connection over TLS to {tlslib.AMQPS_URL}: {exc!r}", returncode=3)
    try:
        r = requests.get(tlslib.API + "/overview", auth=tlslib.MGMT_AUTH, timeout=15)
        r.raise_for_status()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"no management API at {tlslib.API}: {exc!r}", returncode=3)


@pytest.fixture
def mgmt():
    helper = tlslib.Mgmt()
    yield helper
    helper.cleanup()


@pytest.fixture
def connections():
    """Opened connections, closed at teardown."""
    opened = []

    def connect(ctx, credentials=None):
        conn = tlslib.connect(ctx, credentials)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        if conn.is_open:
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass


def _alarm(signum, frame):
    raise TimeoutError(f"test phase exceeded {TEST_TIMEOUT_S}s (broker not answering?)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
