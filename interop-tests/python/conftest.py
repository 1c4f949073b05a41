"""Fixtures for the pika interop suite.

Every test talks to the broker named by AMQP_URL (default: a local Warren on
5672).  Names are unique per test (random suffix) and everything a test
declares through the ``amqp`` fixture is deleted again at teardown, from a
fresh connection, so a failing test does not leak into the next one.
"""

import os
import signal

import pytest

from helpers import AMQP_URL, Amqp

# Hard per-test limit, so a broker that never answers fails the test instead
# of hanging the whole run (no extra plugin needed).
TEST_TIMEOUT_S = int(os.environ.get("INTEROP_TEST_TIMEOUT", "60"))


def pytest_report_header(config):
    return f"AMQP_URL: {AMQP_URL}"


def pytest_sessionstart(session):
    """Fail fast (instead of one timeout per test) when no broker answers."""
    import pika

    from helpers import params

    global SERVER_PRODUCT
    try:
        conn = pika.BlockingConnection(params(stack_timeout=15))
        SERVER_PRODUCT = _product(conn._impl.server_properties)
        conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable broker"
        pytest.exit(f"cannot open an AMQP connection to {AMQP_URL}: {exc!r}", returncode=3)


# The broker's connection.start server_properties["product"] ("Warren" or
# "RabbitMQ"), read once per session; the warren_only / warren_pending markers
# and the server_product fixture use it.
SERVER_PRODUCT = None


def _product(server_properties):
    value = (server_properties or {}).get("product")
    return value.decode() if isinstance(value, bytes) else value


def is_warren():
    return SERVER_PRODUCT == "Warren"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("warren_only") and not is_warren():
            item.add_marker(pytest.mark.skip(reason=f"Warren-only (server is {SERVER_PRODUCT})"))
        pending = item.get_closest_marker("warren_pending")
        # INTEROP_RUN_PENDING=1 runs them anyway, to see how far Warren has got.
        if pending and is_warren() and os.environ.get("INTEROP_RUN_PENDING") != "1":
            feature = pending.args[0] if pending.args else "?"
            item.add_marker(pytest.mark.skip(reason=f"not yet implemented in Warren: {feature}"))


@pytest.fixture(scope="session")
def server_product():
    return SERVER_PRODUCT


@pytest.fixture
def amqp():
    helper = Amqp()
    yield helper
    helper.cleanup()


@pytest.fixture
def conn(amqp):
    return amqp.connect()


@pytest.fixture
def ch(conn):
    return conn.channel()


def _alarm(signum, frame):
    raise TimeoutError(f"test phase exceeded {TEST_TIMEOUT_S}s (broker not answering?)")


class _Alarm:
    """SIGALRM-based limit for one test phase (setup, call or teardown)."""

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
