"""Vhost and user limits, set through the API and felt by pika: each refusal with RabbitMQ's code
and text, the API's answers and validation, and the limits in an exported definitions file.

A refused connection or channel is a connection error (530); the tests wait for the broker to
give a closed connection's place back before they count on it, as RabbitMQ tracks connections
asynchronously too."""

import pika
import pytest

from mgmtlib import amqp_connect, error_body, eventually, q


def _user_and_vhost(api):
    vhost = api.create_vhost()
    user = api.create_user(password="pw")
    api.set_permissions(vhost, user)
    api.set_permissions(vhost, "guest")
    return user, vhost


def _refused_connection(**kw):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        amqp_connect(**kw)
    return str(e.value)


def _set(api, path, value):
    r = api.put(path, json={"value": value})
    assert r.status_code == 204, (path, r.status_code, r.text)


def _connect_eventually(**kw):
    """A connection, once the broker has given back the place of one it closed."""
    def attempt():
        try:
            return amqp_connect(**kw)
        except pika.exceptions.AMQPConnectionError as exc:
            raise AssertionError(str(exc)) from exc
    return eventually(attempt, what="a connection place to be given back")


def test_vhost_max_connections(api):
    user, vhost = _user_and_vhost(api)
    _set(api, f"/vhost-limits/{q(vhost)}/max-connections", 1)
    assert api.get_json(f"/vhost-limits/{q(vhost)}") == [{"vhost": vhost, "value": {"max-connections": 1}}]
    first = amqp_connect(vhost=vhost, user=user, password="pw")
    text = _refused_connection(vhost=vhost)
    assert "(530) \"NOT_ALLOWED - access to vhost '%s' refused for user 'guest': connection limit (1) is reached\"" % vhost in text
    first.close()
    _connect_eventually(vhost=vhost).close()
    _set(api, f"/vhost-limits/{q(vhost)}/max-connections", 0)
    assert "connection limit (0) is reached" in _refused_connection(vhost=vhost, user=user, password="pw")
    assert api.delete(f"/vhost-limits/{q(vhost)}/max-connections").status_code == 204
    assert api.get_json(f"/vhost-limits/{q(vhost)}") == []
    amqp_connect(vhost=vhost, user=user, password="pw").close()


def test_vhost_max_queues(api):
    user, vhost = _user_and_vhost(api)
    _set(api, f"/vhost-limits/{q(vhost)}/max-queues", 1)
    ch = amqp_connect(vhost=vhost, user=user, password="pw").channel()
    ch.queue_declare("q1")
    ch.queue_declare("q1")  # a redeclare is not a new queue
    ch.queue_declare("q1", passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("q2")
    assert (e.value.reply_code, e.value.reply_text) == (
        406, f"PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '{vhost}' (1) is reached")
    r = api.put(f"/queues/{q(vhost)}/q3", json={})
    assert r.status_code == 400
    assert error_body(r)["reason"] == f"cannot declare queue 'q3': queue limit in vhost '{vhost}' (1) is reached"
    _set(api, f"/vhost-limits/{q(vhost)}/max-queues", -1)
    amqp_connect(vhost=vhost, user=user, password="pw").channel().queue_declare("q2")


def test_user_max_connections_and_channels(api):
    user, vhost = _user_and_vhost(api)
    _set(api, f"/user-limits/{q(user)}/max-connections", 1)
    _set(api, f"/user-limits/{q(user)}/max-channels", 1)
    assert api.get_json(f"/user-limits/{q(user)}") == [{"user": user, "value": {"max-connections": 1, "max-channels": 1}}]
    assert api.get_json(f"/users/{q(user)}")["limits"] == {"max-connections": 1, "max-channels": 1}
    conn = amqp_connect(vhost=vhost, user=user, password="pw")
    text = _refused_connection(vhost=vhost, user=user, password="pw")
    assert f"(530) \"NOT_ALLOWED - connection refused for user '{user}': user connection limit (1) is reached\"" in text
    conn.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.channel()
    assert (e.value.reply_code, e.value.reply_text) == (
        530, f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user limit of (1)")
    assert api.delete(f"/user-limits/{q(user)}/max-channels").status_code == 204
    conn = _connect_eventually(vhost=vhost, user=user, password="pw")
    conn.channel()
    conn.channel()
    assert api.get_json(f"/user-limits/{q(user)}") == [{"user": user, "value": {"max-connections": 1}}]


def test_limits_are_validated(api):
    user, vhost = _user_and_vhost(api)
    cases = [
        (f"/vhost-limits/{q(vhost)}/max-foo", {"value": 2}, 400,
         "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,2}] in limits\n"),
        (f"/vhost-limits/{q(vhost)}/max-queues", {"value": "x"}, 400,
         "Validation failed\n\nmax-queues should be a number, actually was <<\"x\">>\n"),
        (f"/vhost-limits/{q(vhost)}/max-queues", {}, 400, "[{key_missing,value}]"),
        ("/vhost-limits/no-such-vhost-anywhere/max-queues", {"value": 1}, 404, "vhost_not_found"),
        (f"/user-limits/{q(user)}/max-queues", {"value": 2}, 400,
         "Unrecognised terms [{<<\"max-queues\">>,2}] in user-limits"),
    ]
    for path, body, status, reason in cases:
        r = api.put(path, json=body)
        assert (r.status_code, error_body(r)["reason"]) == (status, reason), path
    assert api.get("/vhost-limits/no-such-vhost-anywhere").status_code == 404
    assert api.get("/user-limits/no-such-user-anywhere").status_code == 404
    assert api.put("/user-limits/no-such-user-anywhere/max-channels", json={"value": 1}).status_code == 400


def test_limits_in_definitions_and_parameters(api):
    user, vhost = _user_and_vhost(api)
    _set(api, f"/vhost-limits/{q(vhost)}/max-queues", 5)
    _set(api, f"/user-limits/{q(user)}/max-connections", 7)
    defs = api.get_json("/definitions")
    param = {"value": {"max-queues": 5}, "vhost": vhost, "component": "vhost-limits", "name": "limits"}
    assert param in defs["parameters"]
    assert [u["limits"] for u in defs["users"] if u["name"] == user] == [{"max-connections": 7}]
    assert api.get_json(f"/parameters/vhost-limits/{q(vhost)}/limits") == param
    assert param in api.get_json("/parameters/vhost-limits")
    # The parameter replaces the whole set, as a definitions import does.
    r = api.put(f"/parameters/vhost-limits/{q(vhost)}/limits", json={"value": {"max-connections": 3}})
    assert r.status_code in (201, 204), r.text
    assert api.get_json(f"/vhost-limits/{q(vhost)}") == [{"vhost": vhost, "value": {"max-connections": 3}}]
    # Imported, a user's limits are set over those it has.
    body = {"users": [{"name": user, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
                       "tags": [], "limits": {"max-channels": 2}}]}
    assert api.post("/definitions", json=body).status_code in (200, 204)
    assert api.get_json(f"/users/{q(user)}")["limits"] == {"max-connections": 7, "max-channels": 2}
