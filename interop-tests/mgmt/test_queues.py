"""Queues: /api/queues[/{vhost}[/{name}[/contents|/get|/bindings]]], their status codes and
error bodies, the queue object's fields and counts, get with every ackmode, purge, pagination."""

import base64
import re

import pika
import pytest

from mgmtlib import NOT_FOUND, amqp_connect, error_body, eventually, q, unique


# -- create, redeclare, delete ---------------------------------------------------------------


def test_put_creates_201_then_204_and_delete_204(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}", json={"durable": True, "auto_delete": False, "arguments": {}})
    assert r.status_code == 201
    assert r.text == ""
    r = api.put(f"/queues/%2F/{q(name)}", json={"durable": True, "auto_delete": False, "arguments": {}})
    assert r.status_code == 204
    assert r.text == ""
    r = api.delete(f"/queues/%2F/{q(name)}")
    assert r.status_code == 204
    assert r.text == ""
    r = api.get(f"/queues/%2F/{q(name)}")
    assert r.status_code == 404


def test_delete_missing_queue_is_404(api):
    r = api.delete(f"/queues/%2F/{q(unique('missing'))}")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


def test_get_missing_queue_is_404(api):
    r = api.get(f"/queues/%2F/{q(unique('missing'))}")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


def test_unknown_vhost(api):
    r = api.get("/queues/interop-no-such-vhost/q")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    r = api.put("/queues/interop-no-such-vhost/q", json={})
    assert r.status_code == 404
    assert error_body(r) == {"error": "not_found", "reason": "vhost_not_found"}


def test_booleans_as_strings(api):
    """rabbitmqadmin sends "durable":"true": both strings and JSON booleans are accepted."""
    durable = api.create_queue(durable="true", auto_delete="false")
    transient = api.create_queue(durable="false", auto_delete="true")
    obj = api.get_json(f"/queues/%2F/{q(durable)}")
    assert (obj["durable"], obj["auto_delete"]) == (True, False)
    obj = api.get_json(f"/queues/%2F/{q(transient)}")
    assert (obj["durable"], obj["auto_delete"]) == (False, True)


def test_not_a_boolean_is_400(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}", json={"durable": "yes"})
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"
    assert api.get(f"/queues/%2F/{q(name)}").status_code == 404


def test_empty_body_declares_with_defaults(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}")
    assert r.status_code == 201
    obj = api.get_json(f"/queues/%2F/{q(name)}")
    assert (obj["durable"], obj["auto_delete"], obj["exclusive"], obj["arguments"]) == (False, False, False, {})


def test_inequivalent_redeclare_is_400_with_the_amqp_text(api):
    name = api.create_queue(durable=True)
    r = api.put(f"/queues/%2F/{q(name)}", json={"durable": False})
    assert r.status_code == 400
    assert error_body(r) == {
        "error": "bad_request",
        "reason": f"inequivalent arg 'durable' for queue '{name}' in vhost '/': received 'false' but current is 'true'",
    }


def test_invalid_argument_is_400(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}", json={"arguments": {"x-max-length": "abc"}})
    assert r.status_code == 400
    assert error_body(r) == {
        "error": "bad_request",
        "reason": f"invalid arg 'x-max-length' for queue '{name}' in vhost '/': \"expected integer, got longstr\"",
    }


def test_bad_json_is_400_not_json(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}", data="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "not_json"}


def test_doubly_encoded_json_is_400(api):
    name = unique("q")
    api.track(f"/queues/%2F/{q(name)}")
    r = api.put(f"/queues/%2F/{q(name)}", data='"{\\"durable\\":true}"', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_body(r) == {
        "error": "bad_request",
        "reason": "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?",
    }


def test_amq_prefix_is_refused(api):
    r = api.put("/queues/%2F/amq.interop-refused", json={})
    assert r.status_code == 401
    assert error_body(r) == {"error": "not_authorised", "reason": "Access refused."}


def test_vhost_encoding(api):
    """The vhost is one percent-encoded path segment: %2F and %2f are "/"; a vhost with a space
    is %20 (a "+" is not decoded to a space)."""
    name = api.create_queue()
    assert api.get_json(f"/queues/%2f/{q(name)}")["vhost"] == "/"
    vhost = api.create_vhost(unique("vh") + " with space")
    other = api.create_queue(vhost=vhost)
    obj = api.get_json(f"/queues/{q(vhost)}/{q(other)}")
    assert (obj["name"], obj["vhost"]) == (other, vhost)
    plus = vhost.replace(" ", "+")
    assert api.get(f"/queues/{plus}/{q(other)}").status_code == 404


def test_queue_names_with_special_characters(api):
    name = unique("q") + " #/?%~é"
    api.create_queue(name)
    obj = api.get_json(f"/queues/%2F/{q(name)}")
    assert obj["name"] == name
    assert name in [x["name"] for x in api.get_json("/queues/%2F")]


def test_delete_if_empty_and_if_unused(api):
    name = api.create_queue()
    api.publish(name, "keep me")
    r = api.delete(f"/queues/%2F/{q(name)}?if-empty=true")
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": f"queue '{name}' in vhost '/' not empty"}
    conn = amqp_connect()
    conn.channel().basic_consume(name, lambda *a: None)
    r = api.delete(f"/queues/%2F/{q(name)}?if-unused=true")
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": f"queue '{name}' in vhost '/' in use"}
    assert api.get(f"/queues/%2F/{q(name)}").status_code == 200


# -- the queue object ------------------------------------------------------------------------

BASIC_FIELDS = {"name", "vhost", "type", "durable", "auto_delete", "exclusive", "arguments", "node"}
STATS_FIELDS = {
    "state", "consumers", "messages", "messages_ready", "messages_unacknowledged", "policy",
    "operator_policy", "effective_policy_definition", "exclusive_consumer_tag", "idle_since",
    "consumer_utilisation", "memory", "message_bytes",
}


def test_queue_object_fields(api):
    name = api.create_queue(durable=True, arguments={"x-max-length": 100, "x-custom": "v"})

    def check():
        obj = api.get_json(f"/queues/%2F/{q(name)}")
        missing = (BASIC_FIELDS | STATS_FIELDS) - set(obj)
        assert not missing, f"missing fields {sorted(missing)}"
        return obj

    obj = eventually(check, what="the queue's statistics fields")
    assert obj["name"] == name
    assert obj["vhost"] == "/"
    assert obj["type"] == "classic"
    assert (obj["durable"], obj["auto_delete"], obj["exclusive"]) == (True, False, False)
    assert obj["arguments"] == {"x-max-length": 100, "x-custom": "v"}
    assert obj["node"] == api.get_json("/overview")["node"]
    assert obj["state"] == "running"
    for key in ("consumers", "messages", "messages_ready", "messages_unacknowledged"):
        assert obj[key] == 0 and type(obj[key]) is int, key
    # No policy applies: null (not missing), and an empty effective definition.
    assert obj["policy"] is None
    assert obj["operator_policy"] is None
    assert obj["effective_policy_definition"] == {}
    assert obj["exclusive_consumer_tag"] is None
    # e.g. "2026-12-06T12:23:55.116+00:00"
    assert re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", obj["idle_since"]), obj["idle_since"]
    # The single-queue view adds these lists.
    assert obj["consumer_details"] == []
    assert isinstance(obj["incoming"], list)
    assert isinstance(obj["deliveries"], list)


def test_counts_ready_unacked_consumers(api):
    name = api.create_queue()
    for i in range(3):
        assert api.publish(name, f"m{i}") == {"routed": True}
    conn = amqp_connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    delivered = []
    ch.basic_consume(name, lambda c, m, p, b: delivered.append(m.delivery_tag), consumer_tag="interop-ctag")

    def one_delivery():
        conn.process_data_events(time_limit=0.05)
        assert len(delivered) == 1, f"{len(delivered)} deliveries"

    eventually(one_delivery, what="the first delivery")
    obj = api.queue_when(name, messages=3, messages_ready=2, messages_unacknowledged=1, consumers=1)
    assert obj["consumer_details"][0]["consumer_tag"] == "interop-ctag"
    assert obj["consumer_details"][0]["prefetch_count"] == 1
    assert obj["consumer_details"][0]["ack_required"] is True
    listed = [x for x in api.get_json("/queues/%2F") if x["name"] == name]
    assert len(listed) == 1
    assert (listed[0]["messages"], listed[0]["messages_ready"], listed[0]["messages_unacknowledged"]) == (3, 2, 1)
    assert listed[0]["consumers"] == 1


def test_exclusive_queue_is_listed_as_exclusive(api):
    conn = amqp_connect()
    name = conn.channel().queue_declare("", exclusive=True).method.queue
    obj = api.get_json(f"/queues/%2F/{q(name)}")
    assert obj["exclusive"] is True
    conn.close()
    eventually(lambda: _assert_status(api.get(f"/queues/%2F/{q(name)}"), 404), what="the exclusive queue to go")


def _assert_status(r, status):
    assert r.status_code == status, f"{r.status_code} {r.text!r}"


# -- purge -----------------------------------------------------------------------------------


def test_purge(api):
    name = api.create_queue()
    for i in range(4):
        api.publish(name, f"m{i}")
    api.queue_when(name, messages=4)
    r = api.delete(f"/queues/%2F/{q(name)}/contents")
    assert r.status_code == 204
    assert r.text == ""
    assert api.get_messages(name) == []
    api.queue_when(name, messages=0, messages_ready=0)


def test_purge_missing_queue_is_404(api):
    r = api.delete(f"/queues/%2F/{q(unique('missing'))}/contents")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


# -- get ---------------------------------------------------------------------------------------


def _publish_three(api, name):
    for i in range(3):
        assert api.publish(name, f"body-{i}") == {"routed": True}


def test_get_message_fields(api):
    name = api.create_queue()
    props = {"content_type": "text/plain", "delivery_mode": 2, "headers": {"h": 1, "s": "x"}, "correlation_id": "c-1"}
    api.publish(name, "héllo", properties=props)
    api.publish(name, "plain")
    got = api.get_messages(name, count=2, ackmode="ack_requeue_false")
    assert got[0] == {
        "payload_bytes": 6,
        "redelivered": False,
        "exchange": "",
        "routing_key": name,
        "message_count": 1,
        "properties": props,
        "payload": "héllo",
        "payload_encoding": "string",
    }
    # A message without properties: RabbitMQ sends an empty JSON *list* here, and rabbitmqadmin's
    # get table shows a "properties" column only because of that (it skips nested objects).
    assert got[1]["properties"] == []
    assert got[1]["message_count"] == 0


@pytest.mark.parametrize(
    "ackmode,stays,redelivered_next",
    [
        ("ack_requeue_true", True, True),
        ("reject_requeue_true", True, True),
        ("ack_requeue_false", False, None),
        ("reject_requeue_false", False, None),
    ],
)
def test_get_ackmodes(api, ackmode, stays, redelivered_next):
    name = api.create_queue()
    _publish_three(api, name)
    got = api.get_messages(name, count=2, ackmode=ackmode)
    assert [m["payload"] for m in got] == ["body-0", "body-1"]
    assert [m["redelivered"] for m in got] == [False, False]
    assert [m["message_count"] for m in got] == [2, 1]
    rest = api.get_messages(name, count=5, ackmode="ack_requeue_false")
    if stays:
        # requeued in their place, and now marked redelivered
        assert [m["payload"] for m in rest] == ["body-0", "body-1", "body-2"]
        assert [m["redelivered"] for m in rest] == [redelivered_next, redelivered_next, False]
    else:
        assert [m["payload"] for m in rest] == ["body-2"]


def test_get_count_as_string(api):
    """rabbitmqadmin sends "count":"2"."""
    name = api.create_queue()
    _publish_three(api, name)
    body = {"count": "2", "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": "50000"}
    r = api.post(f"/queues/%2F/{q(name)}/get", json=body)
    assert r.status_code == 200
    assert [m["payload"] for m in r.json()] == ["body-0", "body-1"]


def test_get_from_empty_queue_is_an_empty_list(api):
    name = api.create_queue()
    assert api.get_messages(name, count=3) == []


def test_get_encoding_auto_and_base64(api):
    name = api.create_queue()
    api.publish(name, base64.b64encode(b"\xff\x00binary").decode(), encoding="base64")
    api.publish(name, "text")
    auto = api.get_messages(name, count=2, ackmode="ack_requeue_true", encoding="auto")
    assert (auto[0]["payload_encoding"], base64.b64decode(auto[0]["payload"])) == ("base64", b"\xff\x00binary")
    assert auto[0]["payload_bytes"] == 8
    assert (auto[1]["payload_encoding"], auto[1]["payload"]) == ("string", "text")
    forced = api.get_messages(name, count=2, ackmode="ack_requeue_false", encoding="base64")
    assert [m["payload_encoding"] for m in forced] == ["base64", "base64"]
    assert base64.b64decode(forced[1]["payload"]) == b"text"


def test_get_truncate(api):
    name = api.create_queue()
    api.publish(name, "0123456789")
    got = api.get_messages(name, ackmode="ack_requeue_false", truncate=4)
    assert got[0]["payload"] == "0123"
    assert got[0]["payload_bytes"] == 10


def test_get_errors(api):
    name = api.create_queue()
    r = api.post(f"/queues/%2F/{q(name)}/get", json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "utf-16"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "Unsupported encoding. Please use auto or base64."}
    r = api.post(f"/queues/%2F/{q(name)}/get", json={"ackmode": "ack_requeue_true", "encoding": "auto"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,count}]"}
    r = api.post(f"/queues/%2F/{q(name)}/get", json={"count": 1, "encoding": "auto"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,ackmode}]"}


def test_get_missing_queue_is_404_not_found(api):
    name = unique("missing")
    r = api.post(f"/queues/%2F/{q(name)}/get", json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    assert r.status_code == 404
    assert error_body(r) == {"error": "not_found", "reason": f"NOT_FOUND - no queue '{name}' in vhost '/'"}


def test_get_sees_what_amqp_published(api):
    name = api.create_queue()
    ch = amqp_connect().channel()
    ch.confirm_delivery()
    ch.basic_publish("", name, b"from pika", pika.BasicProperties(message_id="m-1", priority=3))
    got = api.get_messages(name, ackmode="ack_requeue_false")
    assert got[0]["payload"] == "from pika"
    assert got[0]["properties"] == {"message_id": "m-1", "priority": 3}


# -- lists and pagination --------------------------------------------------------------------


def test_queue_lists(api):
    vhost = api.create_vhost()
    a = api.create_queue("a-" + unique("q"), vhost=vhost)
    b = api.create_queue("b-" + unique("q"), vhost=vhost)
    in_vhost = api.get_json(f"/queues/{q(vhost)}")
    assert [x["name"] for x in in_vhost] == [a, b]
    everywhere = {(x["vhost"], x["name"]) for x in api.get_json("/queues")}
    assert {(vhost, a), (vhost, b)} <= everywhere
    cols = api.get_json(f"/queues/{q(vhost)}?columns=name,durable")
    assert cols == [{"name": a, "durable": False}, {"name": b, "durable": False}]
    rev = api.get_json(f"/queues/{q(vhost)}?sort=name&sort_reverse=true&columns=name")
    assert rev == [{"name": b}, {"name": a}]


PAGE_KEYS = {"filtered_count", "item_count", "items", "page", "page_count", "page_size", "total_count"}


def test_pagination_envelope(api):
    prefix = unique("pg")
    names = [api.create_queue(f"{prefix}.{i}") for i in range(3)]
    page1 = api.get_json(f"/queues/%2F?page=1&page_size=2&name={q(prefix)}&columns=name")
    assert set(page1) == PAGE_KEYS
    assert page1["items"] == [{"name": names[0]}, {"name": names[1]}]
    assert (page1["page"], page1["page_size"], page1["page_count"]) == (1, 2, 2)
    assert (page1["item_count"], page1["filtered_count"]) == (2, 3)
    assert page1["total_count"] >= 3
    page2 = api.get_json(f"/queues/%2F?page=2&page_size=2&name={q(prefix)}&columns=name")
    assert page2["items"] == [{"name": names[2]}]
    assert (page2["page"], page2["item_count"], page2["filtered_count"]) == (2, 1, 3)


def test_pagination_name_filter_is_case_insensitive_and_regex(api):
    prefix = unique("pg")
    names = [api.create_queue(f"{prefix}.{i}") for i in range(3)]
    upper = api.get_json(f"/queues/%2F?page=1&name={q(prefix.upper())}&columns=name")
    assert [x["name"] for x in upper["items"]] == names
    regex = q(f"^{re.escape(prefix)}\\.(1|2)$")
    page = api.get_json(f"/queues/%2F?page=1&page_size=10&name={regex}&use_regex=true&sort=name&sort_reverse=true&columns=name")
    assert [x["name"] for x in page["items"]] == [names[2], names[1]]
    assert page["filtered_count"] == 2


def test_name_filter_without_page(api):
    """Without page= the reply is a plain list. RabbitMQ then ignores the name filter; Warren
    applies it (a documented difference its users asked for), so each broker is held to its own."""
    prefix = unique("pg")
    mine = api.create_queue(f"{prefix}.0")
    other = api.create_queue()
    listed = api.get_json(f"/queues/%2F?name={q(prefix)}&columns=name")
    assert isinstance(listed, list)
    names = {x["name"] for x in listed}
    if api.get_json("/overview").get("product_name") == "Warren":
        assert mine in names and other not in names
    else:
        assert {mine, other} <= names


def test_pagination_empty_result_and_out_of_range(api):
    prefix = unique("pg")
    empty = api.get_json(f"/queues/%2F?page=1&name={q(prefix)}")
    assert empty["items"] == []
    assert (empty["page"], empty["page_size"], empty["page_count"], empty["item_count"], empty["filtered_count"]) == (1, 100, 0, 0, 0)
    names = [api.create_queue(f"{prefix}.{i}") for i in range(3)]
    assert names
    r = api.get(f"/queues/%2F?page=3&page_size=2&name={q(prefix)}")
    assert r.status_code == 400
    assert error_body(r) == {"error": "page_out_of_range", "reason": "Page out of range, page: 3 page size: 2, len: 3"}


@pytest.mark.parametrize(
    "query,body",
    [
        ("page=0", {"error": "invalid_pagination_parameters", "reason": "Invalid pagination parameters: page number 0, page size undefined"}),
        ("page=1&page_size=501", {"error": "invalid_pagination_parameters", "reason": "Invalid pagination parameters: page number 1, page size 501"}),
        ("page=1&page_size=0", {"error": "invalid_pagination_parameters", "reason": "Invalid pagination parameters: page number 1, page size 0"}),
        ("page=x", {"error": "bad_request", "reason": "Pagination parameters are invalid"}),
        ("page=1&use_regex=true&name=%28%28", {"error": "bad_request", "reason": "Pagination parameters are invalid"}),
    ],
)
def test_bad_pagination_parameters(api, query, body):
    r = api.get(f"/queues/%2F?{query}")
    assert r.status_code == 400
    assert error_body(r) == body


def test_queue_bindings_include_the_default_binding(api):
    name = api.create_queue()
    api.post(f"/bindings/%2F/e/amq.direct/q/{q(name)}", json={"routing_key": "rk"})
    bindings = api.get_json(f"/queues/%2F/{q(name)}/bindings")
    assert bindings == [
        {"source": "", "vhost": "/", "destination": name, "destination_type": "queue", "routing_key": name,
         "arguments": {}, "properties_key": name},
        {"source": "amq.direct", "vhost": "/", "destination": name, "destination_type": "queue", "routing_key": "rk",
         "arguments": {}, "properties_key": "rk"},
    ]
