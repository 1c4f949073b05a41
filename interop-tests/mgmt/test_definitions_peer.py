"""Definitions across two brokers: RabbitMQ's fixture imported into the broker under test, its
export imported into a second broker (MGMT_PEER_URL, e.g. the reference RabbitMQ beside Warren, or
Warren beside RabbitMQ), and that broker's export checked for every object. Skipped without a peer
(CI has one broker); run by hand with both:

  MGMT_URL=http://127.0.0.1:15672 MGMT_PEER_URL=http://127.0.0.1:15680 \
    PYTEST_ARGS=test_definitions_peer.py interop-tests/run.sh mgmt
"""

import json
import os

import pytest
import requests

from mgmtlib import MGMT_PASSWORD, MGMT_URL, MGMT_USER, q
from test_definitions import FIXTURE, FIXTURE_USERS, FIXTURE_VHOSTS, _canon, _strip

PEER = os.environ.get("MGMT_PEER_URL", "").rstrip("/")
# What must cross: everything a definitions file carries that both brokers keep.
CROSSING = ["users", "permissions", "topic_permissions", "policies", "queues", "exchanges", "bindings"]


def _remove(base):
    for vhost in FIXTURE_VHOSTS:
        requests.delete(f"{base}/api/vhosts/{q(vhost)}", auth=(MGMT_USER, MGMT_PASSWORD), timeout=30)
    for user in FIXTURE_USERS:
        requests.delete(f"{base}/api/users/{q(user)}", auth=(MGMT_USER, MGMT_PASSWORD), timeout=30)


def _ours(items):
    """The fixture's objects (other tests' and the brokers' own are left out)."""
    def mine(x):
        return any(str(x.get(k, "")).startswith("interop.fixture") for k in ("vhost", "name", "user"))
    return [x for x in items if mine(x)]


@pytest.mark.skipif(not PEER, reason="MGMT_PEER_URL (a second broker's management API) is not set")
def test_an_export_imports_into_the_other_broker(api):
    auth = (MGMT_USER, MGMT_PASSWORD)
    with open(FIXTURE, "rb") as f:
        raw = f.read()
    _remove(MGMT_URL)
    _remove(PEER)
    try:
        r = api.post("/definitions", data=raw, headers={"content-type": "application/json"})
        assert r.status_code == 204, r.text
        exported = api.get_json("/definitions")
        r = requests.post(f"{PEER}/api/definitions", data=json.dumps(exported),
                          headers={"content-type": "application/json"}, auth=auth, timeout=60)
        assert r.status_code == 204, f"the peer refused the export: {r.status_code} {r.text}"
        back = requests.get(f"{PEER}/api/definitions", auth=auth, timeout=60).json()
        for key in CROSSING:
            theirs = [_canon(_strip(key, x)) for x in back[key]]
            for item in _ours(exported[key]):
                assert _canon(_strip(key, item)) in theirs, f"{key}: {item} did not cross"
        assert sorted(v["name"] for v in _ours(back["vhosts"])) == sorted(FIXTURE_VHOSTS)
    finally:
        _remove(MGMT_URL)
        _remove(PEER)
