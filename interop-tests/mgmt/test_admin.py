"""Administration: vhosts, users and permissions (PUT/GET/DELETE), and their effect on logging in
to the API and over AMQP."""

import pika.exceptions
import pytest
import requests

from mgmtlib import API, MGMT_USER, NOT_FOUND, amqp_connect, error_body, q, unique

# A RabbitMQ SHA-256 hash of the password "test12" (salt 908DC60A), from RabbitMQ's docs.
TEST12_HASH = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"


# -- vhosts ------------------------------------------------------------------------------------


def test_vhost_put_201_204_get_delete(api):
    name = unique("vh")
    api.track(f"/vhosts/{q(name)}")
    r = api.put(f"/vhosts/{q(name)}")  # no body at all, as pyrabbit sends it
    assert (r.status_code, r.text) == (201, "")
    r = api.put(f"/vhosts/{q(name)}", json={"description": "interop vhost", "tags": "a,b"})
    assert (r.status_code, r.text) == (204, "")
    v = api.get_json(f"/vhosts/{q(name)}")
    assert v["name"] == name
    assert v["description"] == "interop vhost"
    assert v["tags"] == ["a", "b"]
    assert v["tracing"] is False
    assert name in [x["name"] for x in api.get_json("/vhosts")]
    r = api.delete(f"/vhosts/{q(name)}")
    assert (r.status_code, r.text) == (204, "")
    for method in ("GET", "DELETE"):
        r = api.request(method, f"/vhosts/{q(name)}")
        assert r.status_code == 404, method
        assert error_body(r) == NOT_FOUND


def test_default_vhost(api):
    v = api.get_json("/vhosts/%2F")
    assert v["name"] == "/"
    assert isinstance(v["tags"], list)


def test_creating_a_vhost_grants_its_creator_full_permissions(api):
    vhost = api.create_vhost()
    assert api.get_json(f"/permissions/{q(vhost)}/{q(MGMT_USER)}") == {
        "user": MGMT_USER, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*",
    }
    assert api.get_json(f"/vhosts/{q(vhost)}/permissions") == [
        {"vhost": vhost, "user": MGMT_USER, "configure": ".*", "write": ".*", "read": ".*"},
    ]
    ch = amqp_connect(vhost=vhost).channel()
    ch.queue_declare(unique("q"), exclusive=True)


def test_deleting_a_vhost_deletes_its_queues(api):
    vhost = api.create_vhost()
    queue = api.create_queue(vhost=vhost)
    assert api.delete(f"/vhosts/{q(vhost)}").status_code == 204
    assert api.get(f"/queues/{q(vhost)}/{q(queue)}").status_code == 404
    assert (vhost, queue) not in {(x["vhost"], x["name"]) for x in api.get_json("/queues")}


def test_vhost_name_with_space(api):
    vhost = api.create_vhost(unique("vh") + " spaced")
    assert api.get_json(f"/vhosts/{q(vhost)}")["name"] == vhost
    assert api.get(f"/vhosts/{vhost.replace(' ', '+')}").status_code == 404


# -- users -------------------------------------------------------------------------------------


def test_user_put_201_204_get_delete(api):
    name = unique("user")
    api.track(f"/users/{q(name)}")
    r = api.put(f"/users/{q(name)}", json={"password": "pw1", "tags": "management"})
    assert (r.status_code, r.text) == (201, "")
    r = api.put(f"/users/{q(name)}", json={"password": "pw2", "tags": "monitoring,policymaker"})
    assert (r.status_code, r.text) == (204, "")
    u = api.get_json(f"/users/{q(name)}")
    assert set(u) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert u["name"] == name
    assert u["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert len(u["password_hash"]) == 48  # base64 of a 4-byte salt + SHA-256
    assert u["tags"] == ["monitoring", "policymaker"]
    assert u["limits"] == {}
    assert u in api.get_json("/users")
    # the new password works, the old one not
    assert requests.get(API + "/whoami", auth=(name, "pw2"), timeout=30).json() == {
        "name": name, "tags": ["monitoring", "policymaker"],
    }
    assert requests.get(API + "/whoami", auth=(name, "pw1"), timeout=30).status_code == 401
    r = api.delete(f"/users/{q(name)}")
    assert (r.status_code, r.text) == (204, "")
    for method in ("GET", "DELETE"):
        r = api.request(method, f"/users/{q(name)}")
        assert r.status_code == 404, method
        assert error_body(r) == NOT_FOUND


def test_user_tags(api):
    a = api.create_user(tags="")
    b = api.create_user(tags=["management", "monitoring"])
    assert api.get_json(f"/users/{q(a)}")["tags"] == []
    assert api.get_json(f"/users/{q(b)}")["tags"] == ["management", "monitoring"]


def test_user_without_tags_key_is_400(api):
    name = unique("user")
    api.track(f"/users/{q(name)}")
    r = api.put(f"/users/{q(name)}", json={"password": "pw"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "tags_not_present"}
    assert api.get(f"/users/{q(name)}").status_code == 404


def test_user_with_password_hash(api):
    name = api.create_user(password_hash=TEST12_HASH, hashing_algorithm="rabbit_password_hashing_sha256",
                           tags="management")
    assert api.get_json(f"/users/{q(name)}")["password_hash"] == TEST12_HASH
    r = requests.get(API + "/whoami", auth=(name, "test12"), timeout=30)
    assert r.status_code == 200
    assert r.json()["name"] == name


def test_empty_password_hash_means_no_password_login(api):
    name = api.create_user(password_hash="", tags="management")
    assert api.get_json(f"/users/{q(name)}")["password_hash"] == ""
    for pw in ("", "anything"):
        assert requests.get(API + "/whoami", auth=(name, pw), timeout=30).status_code == 401


def test_new_user_logs_in_over_amqp_once_permitted(api):
    vhost = api.create_vhost()
    user = api.create_user(password="amqp-pw", tags="")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        amqp_connect(vhost=vhost, user=user, password="amqp-pw")
    api.set_permissions(vhost, user)
    conn = amqp_connect(vhost=vhost, user=user, password="amqp-pw")
    assert conn.is_open


def test_users_without_permissions(api):
    user = api.create_user()
    assert user in [u["name"] for u in api.get_json("/users/without-permissions")]
    api.set_permissions("/", user)
    assert user not in [u["name"] for u in api.get_json("/users/without-permissions")]


# -- permissions -------------------------------------------------------------------------------


def test_permissions_put_201_204_get_delete(api):
    vhost = api.create_vhost()
    user = api.create_user()
    path = f"/permissions/{q(vhost)}/{q(user)}"
    api.track(path)
    r = api.get(path)
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    body = {"configure": "^c", "write": "^w", "read": "^r"}
    r = api.put(path, json=body)
    assert (r.status_code, r.text) == (201, "")
    r = api.put(path, json=body)
    assert (r.status_code, r.text) == (204, "")
    expected = {"user": user, "vhost": vhost, "configure": "^c", "write": "^w", "read": "^r"}
    assert api.get_json(path) == expected
    assert expected in api.get_json("/permissions")
    assert api.get_json(f"/users/{q(user)}/permissions") == [expected]
    assert {**expected} in api.get_json(f"/vhosts/{q(vhost)}/permissions")
    r = api.delete(path)
    assert (r.status_code, r.text) == (204, "")
    r = api.delete(path)
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    assert api.get_json(f"/users/{q(user)}/permissions") == []


def test_permissions_errors(api):
    vhost = api.create_vhost()
    user = api.create_user()
    r = api.put(f"/permissions/{q(vhost)}/{q(user)}", json={"configure": ".*", "write": ".*"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,read}]"}
    for path in (f"/permissions/interop-no-such-vhost/{q(user)}", f"/permissions/{q(vhost)}/interop-no-such-user"):
        r = api.put(path, json={"configure": ".*", "write": ".*", "read": ".*"})
        assert r.status_code == 400, path
        assert error_body(r) == {"error": "bad_request", "reason": "vhost_or_user_not_found"}
    r = api.put(f"/permissions/{q(vhost)}/{q(user)}", json={"configure": "(", "write": ".*", "read": ".*"})
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"


def test_permissions_gate_the_api(api):
    vhost = api.create_vhost()
    user = api.create_user(password="pw", tags="management")
    auth = (user, "pw")
    assert requests.get(f"{API}/queues/{q(vhost)}", auth=auth, timeout=30).status_code == 401
    api.set_permissions(vhost, user, configure="", write="", read=".*")
    assert requests.get(f"{API}/queues/{q(vhost)}", auth=auth, timeout=30).json() == []
    assert api.delete(f"/permissions/{q(vhost)}/{q(user)}").status_code == 204
    r = requests.get(f"{API}/queues/{q(vhost)}", auth=auth, timeout=30)
    assert r.status_code == 401
    assert error_body(r) == {"error": "not_authorised", "reason": "User not authorised to access virtual host"}


# -- topic permissions -------------------------------------------------------------------------


def _same(got, want):
    """Order-insensitive: RabbitMQ lists topic permissions in no fixed order."""
    assert sorted(got, key=_canon) == sorted(want, key=_canon)


def _canon(item):
    return sorted(item.items())


def test_topic_permissions_put_201_204_get_delete(api):
    vhost = api.create_vhost()
    user = api.create_user()
    path = f"/topic-permissions/{q(vhost)}/{q(user)}"
    api.track(path)
    r = api.get(path)
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    r = api.put(path, json={"exchange": "amq.topic", "write": "^a", "read": ".*"})
    assert (r.status_code, r.text) == (201, "")
    r = api.put(path, json={"exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"})
    assert (r.status_code, r.text) == (204, "")
    # A second exchange is a new entry, but the pair had one: 204.
    r = api.put(path, json={"exchange": "interop.no.such.exchange", "write": "", "read": "^r"})
    assert (r.status_code, r.text) == (204, "")
    expected = [
        {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"},
        {"user": user, "vhost": vhost, "exchange": "interop.no.such.exchange", "write": "", "read": "^r"},
    ]
    _same(api.get_json(path), expected)
    _same(api.get_json(f"/users/{q(user)}/topic-permissions"), expected)
    _same(api.get_json(f"/vhosts/{q(vhost)}/topic-permissions"), expected)
    listed = api.get_json("/topic-permissions")
    assert all(e in listed for e in expected)
    assert api.get(f"/users/{q(unique('nobody'))}/topic-permissions").status_code == 404
    assert api.get(f"/vhosts/{q(unique('nowhere'))}/topic-permissions").status_code == 404
    # DELETE clears all of the pair's entries.
    r = api.delete(path)
    assert (r.status_code, r.text) == (204, "")
    assert api.get(path).status_code == 404
    r = api.delete(path)
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    assert api.get_json(f"/users/{q(user)}/topic-permissions") == []


def test_topic_permissions_errors(api):
    vhost = api.create_vhost()
    user = api.create_user()
    path = f"/topic-permissions/{q(vhost)}/{q(user)}"
    api.track(path)
    # The user and the vhost are checked before the body.
    unknown = (f"/topic-permissions/interop-no-such-vhost/{q(user)}",
               f"/topic-permissions/{q(vhost)}/interop-no-such-user")
    for p in unknown:
        r = api.put(p, json={"write": ".*"})
        assert r.status_code == 400, p
        assert error_body(r) == {"error": "bad_request", "reason": "vhost_or_user_not_found"}
    r = api.put(path, data="", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request",
                             "reason": "[{key_missing,exchange},{key_missing,write},{key_missing,read}]"}
    r = api.put(path, json={"exchange": "x", "write": ".*"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,read}]"}
    r = api.put(path, json={"exchange": "x", "write": "(", "read": ".*"})
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"
    assert api.get(path).status_code == 404


def test_deleting_a_user_deletes_its_topic_permissions(api):
    vhost = api.create_vhost()
    user = api.create_user()
    path = f"/topic-permissions/{q(vhost)}/{q(user)}"
    r = api.put(path, json={"exchange": "amq.topic", "write": ".*", "read": ".*"})
    assert r.status_code == 201
    assert api.delete(f"/users/{q(user)}").status_code == 204
    assert all(p["user"] != user for p in api.get_json("/topic-permissions"))
    api.create_user(name=user)
    assert api.get(path).status_code == 404
