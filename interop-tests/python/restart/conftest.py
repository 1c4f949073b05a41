"""Fixtures for the restart tests (run by run.sh in their own serial phase,
after the normal suites, because a restart breaks every open connection).

BROKER_RESTART_CMD is a shell command that restarts the broker at AMQP_URL
and returns once it accepts connections again. Without it these tests are
skipped.
"""

import os
import subprocess
import time

import pika
import pika.exceptions
import pytest

from helpers import params

RESTART_CMD = os.environ.get("BROKER_RESTART_CMD", "").strip()
# Limit for the restart command itself, then how long to keep retrying to connect.
RESTART_CMD_TIMEOUT_S = 180
RECONNECT_S = 30


@pytest.fixture(autouse=True)
def _needs_restart_cmd():
    if not RESTART_CMD:
        pytest.skip("BROKER_RESTART_CMD is not set (a command that restarts the broker; see interop-tests/README.md)")


def _wait_for_broker(timeout=RECONNECT_S):
    deadline = time.monotonic() + timeout
    while True:
        try:
            pika.BlockingConnection(params(socket_timeout=5, stack_timeout=10)).close()
            return
        except pika.exceptions.AMQPConnectionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"broker not accepting connections {timeout}s after the restart: {exc!r}")
            time.sleep(0.5)


@pytest.fixture
def restart_broker():
    """Returns restart(): runs BROKER_RESTART_CMD, then waits until the broker
    accepts AMQP connections again. Connections opened before are dead after it."""

    def restart():
        started = time.monotonic()
        print(f"restarting the broker: {RESTART_CMD}", flush=True)
        # Output is not piped: a broker started in the background by the command
        # could keep a pipe open, and we only wait for the command itself.
        result = subprocess.run(RESTART_CMD, shell=True, stdin=subprocess.DEVNULL, timeout=RESTART_CMD_TIMEOUT_S)
        assert result.returncode == 0, f"BROKER_RESTART_CMD exited with {result.returncode}"
        _wait_for_broker()
        print(f"broker restarted in {time.monotonic() - started:.1f}s", flush=True)

    return restart
