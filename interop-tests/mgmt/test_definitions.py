"""Definitions: GET/POST /api/definitions[/{vhost}] — the export format, what it leaves out, import
(additive, existing queues and exchanges left alone), the errors, and a round trip of a definitions
file exported from RabbitMQ 3.10.8 (fixtures/rabbitmq-3.10-definitions.json)."""

import json
import os

import requests

from mgmtlib import API, MGMT_USER, amqp_connect, error_body, eventually, q, unique

TEST12_HASH = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"  # "test12", see test_admin.py
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "rabbitmq-3.10-definitions.json")

TOP_LEVEL = {"rabbit_version", "rabbitmq_version", "product_name", "product_version", "users", "vhosts",
             "permissions", "topic_permissions", "parameters", "global_parameters", "policies", "queues",
             "exchanges", "bindings"}
VHOST_TOP_LEVEL = {"rabbit_version", "parameters", "policies", "queues", "exchanges", "bindings"}
LISTS = ["users", "vhosts", "permissions", "topic_permissions", "parameters", "policies", "queues", "exchanges", "bindings"]


def _of_vhost(items, vhost):
    return [x for x in items if x.get("vhost") == vhost]


def _canon(item):
    return json.dumps(item, sort_keys=True)


def _same_items(got, want, what):
    """Order-insensitive equality of two lists of objects."""
    g, w = sorted(map(_canon, got)), sorted(map(_canon, want))
    assert g == w, f"{what} differ:\n got  {g}\n want {w}"


def _post(api, path, definitions):
    r = api.post(path, json=definitions)
    assert (r.status_code, r.text) == (204, ""), f"import: {r.status_code} {r.text!r}"


def test_export_top_level(api):
    r = api.get("/definitions")
    assert r.status_code == 200
    d = r.json()
    assert TOP_LEVEL <= set(d)
    for key in LISTS + ["global_parameters"]:
        assert isinstance(d[key], list), key
    assert isinstance(d["rabbit_version"], str) and d["rabbit_version"]
    assert d["rabbit_version"] == d["rabbitmq_version"]
    assert "Content-Disposition" not in r.headers


def test_export_download_sets_content_disposition(api):
    r = api.get("/definitions?download=interop-defs.json")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == "attachment; filename=interop-defs.json"
    assert TOP_LEVEL <= set(r.json())


def test_export_objects_and_what_it_leaves_out(api):
    vhost = api.create_vhost()
    queue = api.create_queue(vhost=vhost, durable=True, arguments={"x-max-length": 10})
    exchange = api.create_exchange(vhost=vhost, type="topic", durable=True)
    api.post(f"/bindings/{q(vhost)}/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "a.*"})
    policy = api.create_policy("^nothing$", {"max-length": 1}, vhost=vhost, priority=2, apply_to="queues")
    conn = amqp_connect(vhost=vhost)
    exclusive = conn.channel().queue_declare("", exclusive=True).method.queue
    d = api.get_json("/definitions")
    assert _of_vhost(d["queues"], vhost) == [
        {"name": queue, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}},
    ]
    assert exclusive not in [x["name"] for x in d["queues"]]
    # no default or amq.* exchanges, no default bindings
    assert _of_vhost(d["exchanges"], vhost) == [
        {"name": exchange, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
    ]
    assert _of_vhost(d["bindings"], vhost) == [
        {"source": exchange, "vhost": vhost, "destination": queue, "destination_type": "queue",
         "routing_key": "a.*", "arguments": {}},
    ]
    assert _of_vhost(d["policies"], vhost) == [
        {"vhost": vhost, "name": policy, "pattern": "^nothing$", "apply-to": "queues",
         "definition": {"max-length": 1}, "priority": 2},
    ]
    assert {"name": vhost} in [{"name": v["name"]} for v in d["vhosts"]]
    assert {"user": MGMT_USER, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"} in d["permissions"]
    me = [u for u in d["users"] if u["name"] == MGMT_USER]
    assert len(me) == 1
    assert set(me[0]) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert "administrator" in me[0]["tags"]


def test_vhost_export(api):
    """A per-vhost export has only these keys, and no vhost on queues, exchanges and bindings
    (policies keep theirs)."""
    vhost = api.create_vhost()
    queue = api.create_queue(vhost=vhost, durable=True)
    exchange = api.create_exchange(vhost=vhost, type="fanout", durable=True)
    api.post(f"/bindings/{q(vhost)}/e/{q(exchange)}/q/{q(queue)}", json={})
    policy = api.create_policy("^x$", {"message-ttl": 5}, vhost=vhost)
    d = api.get_json(f"/definitions/{q(vhost)}")
    assert set(d) == VHOST_TOP_LEVEL
    assert d["queues"] == [{"name": queue, "durable": True, "auto_delete": False, "arguments": {}}]
    assert d["exchanges"] == [{"name": exchange, "type": "fanout", "durable": True, "auto_delete": False,
                               "internal": False, "arguments": {}}]
    assert d["bindings"] == [{"source": exchange, "destination": queue, "destination_type": "queue",
                              "routing_key": "", "arguments": {}}]
    assert d["policies"] == [{"vhost": vhost, "name": policy, "pattern": "^x$", "apply-to": "all",
                              "definition": {"message-ttl": 5}, "priority": 0}]
    assert d["parameters"] == []


def test_vhost_export_unknown_vhost(api):
    r = api.get("/definitions/interop-no-such-vhost")
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "vhost_not_found"}


def _small_definitions(vhost, user):
    return {
        "users": [{"name": user, "password_hash": TEST12_HASH, "hashing_algorithm": "rabbit_password_hashing_sha256",
                   "tags": "management"}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "policies": [{"vhost": vhost, "name": "ttl", "pattern": "^orders$", "apply-to": "queues",
                      "definition": {"message-ttl": 600000}, "priority": 0}],
        "queues": [{"name": "orders", "vhost": vhost, "durable": True, "auto_delete": False,
                    "arguments": {"x-max-length": 100}}],
        "exchanges": [{"name": "events", "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "bindings": [{"source": "events", "vhost": vhost, "destination": "orders", "destination_type": "queue",
                      "routing_key": "order.*", "arguments": {}}],
    }


def test_import_small_definitions(api):
    vhost, user = unique("vh"), unique("user")
    api.track(f"/vhosts/{q(vhost)}")
    api.track(f"/users/{q(user)}")
    defs = _small_definitions(vhost, user)
    _post(api, "/definitions", defs)
    # the user logs in to the API with the password behind the hash
    who = requests.get(API + "/whoami", auth=(user, "test12"), timeout=30)
    assert who.status_code == 200
    assert who.json() == {"name": user, "tags": ["management"]}
    assert api.get_json(f"/users/{q(user)}")["password_hash"] == TEST12_HASH
    assert api.get_json(f"/permissions/{q(vhost)}/{q(user)}")["configure"] == ".*"
    # the objects work: a publish through the exchange lands in the queue
    assert api.publish("order.new", "imported", exchange="events", vhost=vhost) == {"routed": True}
    assert [m["payload"] for m in api.get_messages("orders", vhost=vhost)] == ["imported"]
    obj = api.queue_when("orders", vhost=vhost, policy="ttl")
    assert obj["arguments"] == {"x-max-length": 100}
    assert obj["durable"] is True
    # and they come back out as they went in
    d = api.get_json("/definitions")
    for key in ("queues", "exchanges", "bindings", "policies"):
        _same_items(_of_vhost(d[key], vhost), defs[key], key)
    # Creating a vhost by import, as by PUT, grants the acting user full permissions on it.
    acting = {"user": MGMT_USER, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    _same_items(_of_vhost(d["permissions"], vhost), defs["permissions"] + [acting], "permissions")
    [u] = [u for u in d["users"] if u["name"] == user]
    assert u == {"name": user, "password_hash": TEST12_HASH, "hashing_algorithm": "rabbit_password_hashing_sha256",
                 "tags": ["management"], "limits": {}}


def test_import_is_additive_and_leaves_existing_queues_and_exchanges_alone(api):
    vhost = api.create_vhost()
    keep = api.create_queue("keep", vhost=vhost)
    queue = api.create_queue("existing", vhost=vhost, durable=False)
    exchange = api.create_exchange("existing-x", vhost=vhost, type="direct", durable=False)
    _post(api, "/definitions", {
        "queues": [{"name": queue, "vhost": vhost, "durable": True, "auto_delete": True, "arguments": {"x-max-length": 3}},
                   {"name": "new", "vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [{"name": exchange, "vhost": vhost, "type": "fanout", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
    })
    obj = api.get_json(f"/queues/{q(vhost)}/{q(queue)}")
    assert (obj["durable"], obj["auto_delete"], obj["arguments"]) == (False, False, {})
    x = api.get_json(f"/exchanges/{q(vhost)}/{q(exchange)}")
    assert (x["type"], x["durable"]) == ("direct", False)
    names = [x["name"] for x in api.get_json(f"/queues/{q(vhost)}")]
    assert sorted(names) == sorted([keep, queue, "new"])


def test_vhost_import(api):
    """POST /api/definitions/{vhost}: items without a vhost go into that vhost."""
    vhost = api.create_vhost()
    _post(api, f"/definitions/{q(vhost)}", {
        "queues": [{"name": "q1", "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [{"name": "x1", "type": "direct", "durable": True, "auto_delete": False, "internal": False,
                       "arguments": {}}],
        "bindings": [{"source": "x1", "destination": "q1", "destination_type": "queue", "routing_key": "k",
                      "arguments": {}}],
    })
    assert api.publish("k", "via vhost import", exchange="x1", vhost=vhost) == {"routed": True}
    assert api.get_json(f"/definitions/{q(vhost)}")["queues"] == [
        {"name": "q1", "durable": True, "auto_delete": False, "arguments": {}},
    ]


def test_import_empty_object(api):
    _post(api, "/definitions", {})


def test_import_bad_json(api):
    r = api.post("/definitions", data="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "failed_to_parse_json"}


def test_import_into_unknown_vhost_is_400(api):
    name = unique("q")
    r = api.post("/definitions", json={"queues": [{"name": name, "vhost": "interop-no-such-vhost", "durable": True,
                                                   "auto_delete": False, "arguments": {}}]})
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"


# -- the RabbitMQ 3.10.8 fixture ---------------------------------------------------------------

FIXTURE_VHOSTS = ["interop.fixture.a", "interop.fixture.b"]
FIXTURE_USERS = ["interop.fixture.admin", "interop.fixture.app", "interop.fixture.ops"]
# Keys a later RabbitMQ exports besides 3.10's: fine to have, not compared.
EXTRA_KEYS = {"vhosts": {"description", "tags", "default_queue_type", "metadata", "limits"}, "queues": {"type"}}


def _remove_fixture_objects(api):
    for vhost in FIXTURE_VHOSTS:
        api.delete(f"/vhosts/{q(vhost)}")
    for user in FIXTURE_USERS:
        api.delete(f"/users/{q(user)}")


def _strip(key, item):
    return {k: v for k, v in item.items() if k not in EXTRA_KEYS.get(key, set())}


def test_fixture_round_trip(api):
    """Import a definitions file exported from RabbitMQ 3.10.8 (two vhosts, three users, permissions,
    a topic permission, two policies, four queues, six exchanges, five bindings), export again, and
    compare the object lists (order-insensitive)."""
    with open(FIXTURE, "rb") as f:
        raw = f.read()
    fixture = json.loads(raw)
    _remove_fixture_objects(api)
    for vhost in FIXTURE_VHOSTS:
        api.track(f"/vhosts/{q(vhost)}")
    for user in FIXTURE_USERS:
        api.track(f"/users/{q(user)}")

    r = api.post("/definitions", data=raw, headers={"content-type": "application/json"})
    assert (r.status_code, r.text) == (204, ""), f"import: {r.status_code} {r.text!r}"

    d = api.get_json("/definitions")
    for key in LISTS:
        exported = [_canon(_strip(key, x)) for x in d[key]]
        for item in fixture[key]:
            assert _canon(item) in exported, f"{key}: {item} not in the export"
    # internal_* global parameters are the cluster's identity, not configuration
    for item in fixture["global_parameters"]:
        if not item["name"].startswith("internal_"):
            assert item in d["global_parameters"]

    # The fixture's vhosts hold only what the file put there: their exports match exactly.
    for vhost in FIXTURE_VHOSTS:
        v = api.get_json(f"/definitions/{q(vhost)}")
        for key in ("queues", "exchanges", "bindings"):
            want = [{k: x[k] for k in x if k != "vhost"} for x in _of_vhost(fixture[key], vhost)]
            _same_items([_strip(key, x) for x in v[key]], want, f"{vhost} {key}")
        _same_items(v["policies"], _of_vhost(fixture["policies"], vhost), f"{vhost} policies")
        _same_items(v["parameters"], _of_vhost(fixture["parameters"], vhost), f"{vhost} parameters")
        _same_items(api.get_json(f"/vhosts/{q(vhost)}/permissions"),
                    _of_vhost(fixture["permissions"], vhost), f"{vhost} permissions")

    # The imported users log in with the passwords behind their hashes.
    admin = requests.get(API + "/whoami", auth=("interop.fixture.admin", "fixture-admin-pw"), timeout=30)
    assert admin.json() == {"name": "interop.fixture.admin", "tags": ["administrator"]}
    ops = requests.get(API + "/whoami", auth=("interop.fixture.ops", "fixture-ops-pw"), timeout=30)
    assert ops.json() == {"name": "interop.fixture.ops", "tags": ["monitoring", "policymaker"]}
    app = requests.get(API + "/whoami", auth=("interop.fixture.app", "fixture-app-pw"), timeout=30)
    assert app.status_code == 401
    assert error_body(app) == {"error": "not_authorised", "reason": "Not management user"}

    # The topology works over AMQP for the app user, within its permissions.
    ch = amqp_connect(vhost="interop.fixture.a", user="interop.fixture.app", password="fixture-app-pw").channel()
    ch.confirm_delivery()
    ch.basic_publish("app.events", "order.created", b"fixture order")
    got = api.get_messages("app.orders", vhost="interop.fixture.a")
    assert [m["payload"] for m in got] == ["fixture order"]
    # and the policy applies to the queue it matches
    obj = api.queue_when("app.ttl.cache", vhost="interop.fixture.a", policy="app-ttl")
    assert obj["effective_policy_definition"] == {"max-length": 1000, "message-ttl": 60000}
    # The exchange-scoped policy shows on its exchange.
    eventually(lambda: _exchange_policy(api, "interop.fixture.b", "b.ex", "b-ae"), what="b.ex's policy")


def _exchange_policy(api, vhost, name, policy):
    x = api.get_json(f"/exchanges/{q(vhost)}/{q(name)}")
    assert x.get("policy") == policy, x.get("policy")
