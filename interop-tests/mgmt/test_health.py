"""Health checks: /api/aliveness-test/{vhost} and /api/health/checks/*. A passing check is 200
{"status":"ok",...}; a failing one 503 {"status":"failed","reason":...} (the Go client decodes it)."""

import socket

import pytest
import requests

from mgmtlib import AMQP_PORT, API, NOT_FOUND, error_body


def test_aliveness_test_default_vhost(api):
    r = api.get("/aliveness-test/%2F")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_aliveness_test_unknown_vhost(api):
    r = api.get("/aliveness-test/interop-no-such-vhost")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


@pytest.mark.parametrize("check", ["alarms", "local-alarms", "virtual-hosts"])
def test_simple_checks_pass(api, check):
    r = api.get(f"/health/checks/{check}")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.parametrize("check", ["node-is-quorum-critical", "node-is-mirror-sync-critical"])
def test_single_node_criticality_checks(api, check):
    r = api.get(f"/health/checks/{check}")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "reason": "single node cluster"}


def test_port_listener_amqp_port(api):
    r = api.get(f"/health/checks/port-listener/{AMQP_PORT}")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "port": AMQP_PORT}


def _unused_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_port_listener_unused_port_fails(api):
    port = _unused_port()
    r = api.get(f"/health/checks/port-listener/{port}")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failed"
    assert body["reason"] == "No active listener"
    assert body["missing"] == port
    assert AMQP_PORT in body["ports"]


def test_port_listener_not_a_number(api):
    r = api.get("/health/checks/port-listener/abc")
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "Invalid port"}


def test_protocol_listener_amqp(api):
    r = api.get("/health/checks/protocol-listener/amqp")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "protocol": "amqp"}


def test_protocol_listener_missing_protocol(api):
    r = api.get("/health/checks/protocol-listener/stomp")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failed"
    assert body["reason"] == "No active listener"
    assert body["missing"] == "stomp"
    assert "amqp" in body["protocols"]


def test_health_checks_need_credentials():
    r = requests.get(API + "/health/checks/alarms", timeout=30)
    assert r.status_code == 401
