"""Policies: PUT/GET/DELETE /api/policies/{v}/{name}, validation errors, and a policy's effect as
the queue object shows it (policy, effective_policy_definition) and as AMQP clients feel it."""

import pytest

from mgmtlib import NOT_FOUND, error_body, eventually, q, unique


def test_put_201_204_get_delete(api):
    name = unique("pol")
    pattern = f"^{unique('polq')}\\."
    api.track(f"/policies/%2F/{q(name)}")
    body = {"pattern": pattern, "definition": {"max-length": 5, "message-ttl": 60000}, "priority": 1, "apply-to": "queues"}
    r = api.put(f"/policies/%2F/{q(name)}", json=body)
    assert (r.status_code, r.text) == (201, "")
    r = api.put(f"/policies/%2F/{q(name)}", json=body)
    assert (r.status_code, r.text) == (204, "")
    expected = {"vhost": "/", "name": name, "pattern": pattern, "apply-to": "queues",
                "definition": {"max-length": 5, "message-ttl": 60000}, "priority": 1}
    assert api.get_json(f"/policies/%2F/{q(name)}") == expected
    assert expected in api.get_json("/policies/%2F")
    assert expected in api.get_json("/policies")
    r = api.delete(f"/policies/%2F/{q(name)}")
    assert (r.status_code, r.text) == (204, "")
    for method in ("GET", "DELETE"):
        r = api.request(method, f"/policies/%2F/{q(name)}")
        assert r.status_code == 404
        assert error_body(r) == NOT_FOUND


def test_defaults_priority_0_apply_to_all(api):
    name = api.create_policy(f"^{unique('polq')}$", {"max-length": 1})
    got = api.get_json(f"/policies/%2F/{q(name)}")
    assert (got["priority"], got["apply-to"]) == (0, "all")


def test_policy_shows_on_the_queue_and_limits_it(api):
    prefix = unique("polq")
    queue = api.create_queue(f"{prefix}.limited")
    policy = api.create_policy(f"^{prefix}\\.", {"max-length": 2}, apply_to="queues")
    obj = api.queue_when(queue, policy=policy)
    assert obj["effective_policy_definition"] == {"max-length": 2}
    assert obj["operator_policy"] is None
    # The queue's own arguments are unchanged.
    assert obj["arguments"] == {}
    for i in range(5):
        api.publish(queue, f"m{i}")
    api.queue_when(queue, messages=2)
    # max-length drops from the head: the newest two remain.
    assert [m["payload"] for m in api.get_messages(queue, count=10)] == ["m3", "m4"]
    # Listing shows the policy too.
    listed = api.get_json(f"/queues/%2F?page=1&name={q(prefix)}&columns=name,policy")
    assert listed["items"] == [{"name": queue, "policy": policy}]
    # Deleting the policy lifts it.
    assert api.delete(f"/policies/%2F/{q(policy)}").status_code == 204
    obj = api.queue_when(queue, policy=None)
    assert obj["effective_policy_definition"] == {}


def test_highest_priority_wins(api):
    prefix = unique("polq")
    queue = api.create_queue(f"{prefix}.q")
    api.create_policy(f"^{prefix}\\.", {"max-length": 10}, priority=1)
    high = api.create_policy(f"^{prefix}\\.q$", {"max-length": 20}, priority=5)
    obj = api.queue_when(queue, policy=high)
    assert obj["effective_policy_definition"] == {"max-length": 20}


def test_apply_to_exchanges_leaves_queues_alone(api):
    prefix = unique("pol")
    queue = api.create_queue(f"{prefix}.q")
    exchange = api.create_exchange(f"{prefix}.x")
    policy = api.create_policy(f"^{prefix}\\.", {"alternate-exchange": "amq.fanout"}, apply_to="exchanges")
    api.queue_when(queue, policy=None)

    def check():
        x = api.get_json(f"/exchanges/%2F/{q(exchange)}")
        assert x.get("policy") == policy, f"exchange policy {x.get('policy')!r}"

    eventually(check, what="the exchange's policy")


def test_policy_in_another_vhost(api):
    vhost = api.create_vhost()
    name = api.create_policy(".*", {"message-ttl": 1000}, vhost=vhost)
    assert api.get_json(f"/policies/{q(vhost)}") == [
        {"vhost": vhost, "name": name, "pattern": ".*", "apply-to": "all", "definition": {"message-ttl": 1000}, "priority": 0},
    ]
    queue = api.create_queue(vhost=vhost)
    api.queue_when(queue, vhost=vhost, policy=name)


def test_unknown_vhost(api):
    r = api.put("/policies/interop-no-such-vhost/p", json={"pattern": ".*", "definition": {"max-length": 1}})
    assert r.status_code == 404
    assert error_body(r) == {"error": "not_found", "reason": "vhost_not_found"}


@pytest.mark.parametrize(
    "body,reason",
    [
        ({"definition": {"max-length": 1}}, "[{key_missing,pattern}]"),
        ({"pattern": "^x"}, "[{key_missing,definition}]"),
        ({"pattern": "^x", "definition": {}}, "Validation failed\n\nno policy provided\n"),
        ({"pattern": "^x", "definition": {"max-length": 1}, "apply-to": "bogus"},
         "Validation failed\n\napply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'\n"),
    ],
)
def test_validation_errors_exact(api, body, reason):
    name = unique("pol")
    api.track(f"/policies/%2F/{q(name)}")
    r = api.put(f"/policies/%2F/{q(name)}", json=body)
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": reason}


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"pattern": "^x", "definition": {"interop-unknown-key": 1}}, "are not recognised policy settings"),
        ({"pattern": "(", "definition": {"max-length": 1}}, "pattern should be regular expression but is invalid"),
        ({"pattern": "^x", "definition": {"max-length": "abc"}}, "is not a valid maximum length"),
        ({"pattern": "^x", "definition": {"max-length": 1}, "priority": "5"}, "priority should be a number"),
    ],
)
def test_validation_errors(api, body, fragment):
    """RabbitMQ's reasons here quote Erlang terms (HTML-escaped, e.g. &lt;&lt;"abc"&gt;&gt;), so only
    the stable part of the text is compared."""
    name = unique("pol")
    api.track(f"/policies/%2F/{q(name)}")
    r = api.put(f"/policies/%2F/{q(name)}", json=body)
    assert r.status_code == 400
    err = error_body(r)
    assert err["error"] == "bad_request"
    assert err["reason"].startswith("Validation failed\n\n"), err["reason"]
    assert fragment in err["reason"]
    assert api.get(f"/policies/%2F/{q(name)}").status_code == 404
