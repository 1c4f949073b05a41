"""Authentication and the shared error shapes: 401 challenges, the not_authorised bodies for
users without the right tags or permissions, unknown paths and methods."""

import requests

from mgmtlib import API, LOGIN_FAILED, MGMT_USER, NOT_FOUND, WWW_AUTHENTICATE, error_body, q


def test_no_credentials_is_a_401_challenge():
    r = requests.get(API + "/overview", timeout=30)
    assert r.status_code == 401
    # RabbitMQ sends an empty body here; what matters to HTTP clients is the challenge.
    assert r.headers.get("www-authenticate") == WWW_AUTHENTICATE


def test_wrong_password_is_401_login_failed():
    r = requests.get(API + "/overview", auth=(MGMT_USER, "not-the-password"), timeout=30)
    assert r.status_code == 401
    assert r.headers.get("www-authenticate") == WWW_AUTHENTICATE
    assert error_body(r) == LOGIN_FAILED


def test_unknown_user_is_401_login_failed():
    r = requests.get(API + "/queues", auth=("interop-no-such-user", "x"), timeout=30)
    assert r.status_code == 401
    assert r.headers.get("www-authenticate") == WWW_AUTHENTICATE
    assert error_body(r) == LOGIN_FAILED


def test_empty_password_is_401_login_failed():
    r = requests.get(API + "/whoami", auth=(MGMT_USER, ""), timeout=30)
    assert r.status_code == 401
    assert error_body(r) == LOGIN_FAILED


def test_user_without_management_tag_is_refused(api):
    user = api.create_user(password="pw-plain", tags="")
    r = requests.get(API + "/whoami", auth=(user, "pw-plain"), timeout=30)
    assert r.status_code == 401
    assert error_body(r) == {"error": "not_authorised", "reason": "Not management user"}


def test_management_user_is_not_an_administrator(api):
    user = api.create_user(password="pw-mgmt", tags="management")
    who = requests.get(API + "/whoami", auth=(user, "pw-mgmt"), timeout=30)
    assert who.status_code == 200
    assert who.json()["name"] == user
    assert who.json()["tags"] == ["management"]
    r = requests.get(API + "/users", auth=(user, "pw-mgmt"), timeout=30)
    assert r.status_code == 401
    assert error_body(r) == {"error": "not_authorised", "reason": "Not administrator user"}


def test_management_user_without_permissions_on_a_vhost(api):
    vhost = api.create_vhost()
    user = api.create_user(password="pw-mgmt", tags="management")
    r = requests.get(f"{API}/queues/{q(vhost)}", auth=(user, "pw-mgmt"), timeout=30)
    assert r.status_code == 401
    assert error_body(r) == {"error": "not_authorised", "reason": "User not authorised to access virtual host"}
    api.set_permissions(vhost, user)
    r = requests.get(f"{API}/queues/{q(vhost)}", auth=(user, "pw-mgmt"), timeout=30)
    assert r.status_code == 200
    assert r.json() == []


def test_unknown_endpoint_is_404_object_not_found(api):
    r = api.get("/interop-no-such-endpoint")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


def test_post_on_a_queue_is_405(api):
    name = api.create_queue()
    r = api.post(f"/queues/%2F/{q(name)}", json={})
    assert r.status_code == 405


def test_json_responses_are_not_cached(api):
    r = api.get("/overview")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers.get("cache-control") == "no-cache"
