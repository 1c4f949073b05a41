"""Fixtures for the management HTTP API interop suite.

The broker is named by MGMT_URL (its management listener, without /api; default
http://127.0.0.1:15672) and AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F). Every test
uses unique names and deletes what it made, at teardown, even when it fails.
"""

import os
import signal

import pytest
import requests

import mgmtlib
from mgmtlib import AMQP_URL, API, MGMT_PASSWORD, MGMT_USER, Api

# Hard per-test limit, so a broker that never answers fails the test instead of hanging the run.
# Generous: a test may wait several times for RabbitMQ's 5 s statistics refresh.
TEST_TIMEOUT_S = int(os.environ.get("MGMT_TEST_TIMEOUT", "120"))


def pytest_report_header(config):
    return [f"MGMT_URL: {mgmtlib.MGMT_URL} (API {API}, user {MGMT_USER})", f"AMQP_URL: {AMQP_URL}",
            f"rabbitmqadmin: {mgmtlib.RABBITMQADMIN}" + ("" if mgmtlib.have_rabbitmqadmin() else " (missing)")]


def pytest_sessionstart(session):
    """Fail fast (instead of one failure per test) when no management API or broker answers."""
    try:
        r = requests.get(API + "/overview", auth=(MGMT_USER, MGMT_PASSWORD), timeout=15)
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"no management API at {API}: {exc!r}", returncode=3)
    if r.status_code != 200:
        pytest.exit(f"GET {API}/overview answered {r.status_code}: {r.text[:200]!r}", returncode=3)
    try:
        conn = mgmtlib.amqp_connect()
        conn.close()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"cannot open an AMQP connection to {AMQP_URL}: {exc!r}", returncode=3)
    finally:
        mgmtlib.OPEN_CONNECTIONS.clear()


@pytest.fixture
def api():
    helper = Api()
    yield helper
    # Close the test's AMQP connections first (consumers, exclusive queues), then delete.
    mgmtlib.close_open_connections()
    helper.cleanup()


@pytest.fixture(autouse=True)
def _close_amqp_connections():
    yield
    mgmtlib.close_open_connections()


def _alarm(signum, frame):
    raise TimeoutError(f"test phase exceeded {TEST_TIMEOUT_S}s (broker not answering?)")


class _Alarm:
    def __enter__(self):
        self._old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TEST_TIMEOUT_S)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self._old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _Alarm():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _Alarm():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _Alarm():
        yield
