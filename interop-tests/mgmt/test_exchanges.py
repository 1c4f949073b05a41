"""Exchanges: /api/exchanges[/{vhost}[/{name}[/publish|/bindings/source|/bindings/destination]]]."""

import base64

import pytest

from mgmtlib import ACCESS_REFUSED, NOT_FOUND, amqp_connect, error_body, eventually, q, unique

STANDARD = [
    ("", "direct"),
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
    ("amq.rabbitmq.trace", "topic"),
    ("amq.topic", "topic"),
]


def test_put_201_204_get_delete(api):
    name = unique("x")
    api.track(f"/exchanges/%2F/{q(name)}")
    body = {"type": "topic", "durable": "true", "auto_delete": "false", "internal": "false", "arguments": {}}
    r = api.put(f"/exchanges/%2F/{q(name)}", json=body)
    assert (r.status_code, r.text) == (201, "")
    r = api.put(f"/exchanges/%2F/{q(name)}", json=body)
    assert (r.status_code, r.text) == (204, "")
    obj = api.get_json(f"/exchanges/%2F/{q(name)}")
    assert {k: obj[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")} == {
        "name": name, "vhost": "/", "type": "topic", "durable": True, "auto_delete": False, "internal": False,
        "arguments": {},
    }
    r = api.delete(f"/exchanges/%2F/{q(name)}")
    assert (r.status_code, r.text) == (204, "")
    r = api.delete(f"/exchanges/%2F/{q(name)}")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


def test_empty_body_declares_a_transient_direct_exchange(api):
    name = unique("x")
    api.track(f"/exchanges/%2F/{q(name)}")
    assert api.put(f"/exchanges/%2F/{q(name)}").status_code == 201
    obj = api.get_json(f"/exchanges/%2F/{q(name)}")
    assert (obj["type"], obj["durable"], obj["auto_delete"], obj["internal"]) == ("direct", False, False, False)


def test_arguments_and_internal(api):
    name = api.create_exchange(type="fanout", durable=True, internal=True, arguments={"alternate-exchange": "ae"})
    obj = api.get_json(f"/exchanges/%2F/{q(name)}")
    assert obj["internal"] is True
    assert obj["arguments"] == {"alternate-exchange": "ae"}


def test_fresh_vhost_lists_the_standard_exchanges(api):
    vhost = api.create_vhost()
    listed = api.get_json(f"/exchanges/{q(vhost)}?columns=name,type")
    assert [(x["name"], x["type"]) for x in listed] == STANDARD
    default = [x for x in api.get_json(f"/exchanges/{q(vhost)}") if x["name"] == ""][0]
    assert (default["vhost"], default["durable"], default["internal"]) == (vhost, True, False)
    mine = api.create_exchange("zz-" + unique("x"), vhost=vhost, type="headers")
    assert [x["name"] for x in api.get_json(f"/exchanges/{q(vhost)}")][-1] == mine
    assert (vhost, mine) in {(x["vhost"], x["name"]) for x in api.get_json("/exchanges")}


def test_amq_default_in_the_path_is_the_default_exchange(api):
    obj = api.get_json("/exchanges/%2F/amq.default")
    assert (obj["name"], obj["type"]) == ("", "direct")


def test_inequivalent_type_and_durable(api):
    name = api.create_exchange(type="topic", durable=True)
    r = api.put(f"/exchanges/%2F/{q(name)}", json={"type": "direct", "durable": True})
    assert r.status_code == 400
    assert error_body(r) == {
        "error": "bad_request",
        "reason": f"inequivalent arg 'type' for exchange '{name}' in vhost '/': received 'direct' but current is 'topic'",
    }
    r = api.put(f"/exchanges/%2F/{q(name)}", json={"type": "topic", "durable": False})
    assert r.status_code == 400
    assert error_body(r) == {
        "error": "bad_request",
        "reason": f"inequivalent arg 'durable' for exchange '{name}' in vhost '/': received 'false' but current is 'true'",
    }


def test_invalid_type(api):
    name = unique("x")
    api.track(f"/exchanges/%2F/{q(name)}")
    r = api.put(f"/exchanges/%2F/{q(name)}", json={"type": "interop-bogus"})
    assert r.status_code == 400
    # (RabbitMQ says "invalid exchange type" instead when the name happens to be an Erlang atom
    # its VM already knows, e.g. 'bogus'; "unknown" is the answer for an arbitrary name.)
    assert error_body(r) == {"error": "bad_request", "reason": "unknown exchange type 'interop-bogus'"}


@pytest.mark.parametrize("method,path", [
    ("PUT", "/exchanges/%2F/amq.interop-refused"),
    ("DELETE", "/exchanges/%2F/amq.direct"),
    ("DELETE", "/exchanges/%2F/amq.default"),
])
def test_amq_exchanges_are_refused(api, method, path):
    r = api.request(method, path, json={"type": "direct"} if method == "PUT" else None)
    assert r.status_code == 401
    assert error_body(r) == ACCESS_REFUSED


def test_delete_if_unused(api):
    source = api.create_exchange()
    queue = api.create_queue()
    assert api.post(f"/bindings/%2F/e/{q(source)}/q/{q(queue)}", json={"routing_key": "k"}).status_code == 201
    r = api.delete(f"/exchanges/%2F/{q(source)}?if-unused=true")
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": f"exchange '{source}' in vhost '/' in use"}
    assert api.delete(f"/exchanges/%2F/{q(source)}").status_code == 204


def test_missing_exchange_is_404(api):
    r = api.get(f"/exchanges/%2F/{q(unique('missing'))}")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND


# -- publish -----------------------------------------------------------------------------------


def test_publish_routed_and_not_routed(api):
    exchange = api.create_exchange(type="direct")
    queue = api.create_queue()
    api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "yes"})
    assert api.publish("yes", "hit", exchange=exchange) == {"routed": True}
    assert api.publish("no", "miss", exchange=exchange) == {"routed": False}
    assert api.publish(queue, "direct to queue") == {"routed": True}
    assert api.publish(unique("nobody"), "nowhere") == {"routed": False}
    got = api.get_messages(queue, count=5)
    assert [(m["payload"], m["exchange"], m["routing_key"]) for m in got] == [
        ("hit", exchange, "yes"),
        ("direct to queue", "", queue),
    ]


def test_publish_reaches_an_amqp_consumer_with_properties(api):
    queue = api.create_queue()
    props = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "priority": 4,
        "correlation_id": "corr-1",
        "reply_to": "replies",
        "expiration": "60000",
        "message_id": "msg-1",
        "timestamp": 1700000000,
        "type": "order.created",
        "app_id": "interop",
        "headers": {"int": 7, "str": "s", "nested": {"a": [1, 2]}},
    }
    payload = base64.b64encode(b"\x00\x01\xfe\xff").decode()
    assert api.publish(queue, payload, encoding="base64", properties=props) == {"routed": True}
    ch = amqp_connect().channel()
    method, p, body = None, None, None

    def fetch():
        nonlocal method, p, body
        method, p, body = ch.basic_get(queue, auto_ack=True)
        assert method is not None, "no message yet"

    eventually(fetch, timeout=10, what="the published message")
    assert body == b"\x00\x01\xfe\xff"
    assert (p.content_type, p.content_encoding, p.delivery_mode, p.priority) == ("application/json", "utf-8", 2, 4)
    assert (p.correlation_id, p.reply_to, p.expiration, p.message_id) == ("corr-1", "replies", "60000", "msg-1")
    assert (p.timestamp, p.type, p.app_id) == (1700000000, "order.created", "interop")
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in p.headers.items()}
    assert headers["int"] == 7 and headers["str"] == "s"


def test_publish_missing_exchange_is_400(api):
    name = unique("missing")
    body = {"routing_key": "k", "payload": "x", "payload_encoding": "string", "properties": {}}
    r = api.post(f"/exchanges/%2F/{q(name)}/publish", json=body)
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": f"404 NOT_FOUND - no exchange '{name}' in vhost '/'"}


def test_publish_missing_keys_and_bad_encoding(api):
    r = api.post("/exchanges/%2F/amq.default/publish", json={"routing_key": "k", "payload": "x"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,properties},{key_missing,payload_encoding}]"}
    r = api.post("/exchanges/%2F/amq.default/publish", json={"routing_key": "k", "payload": "x", "payload_encoding": "string"})
    assert r.status_code == 400
    assert error_body(r) == {"error": "bad_request", "reason": "[{key_missing,properties}]"}
    r = api.post("/exchanges/%2F/amq.default/publish",
                 json={"routing_key": "k", "payload": "x", "payload_encoding": "rot13", "properties": {}})
    assert r.status_code == 400
    assert error_body(r)["error"] == "bad_request"


def test_exchange_binding_lists(api):
    source = api.create_exchange(type="topic")
    dest = api.create_exchange(type="fanout")
    queue = api.create_queue()
    api.post(f"/bindings/%2F/e/{q(source)}/e/{q(dest)}", json={"routing_key": "a.#"})
    api.post(f"/bindings/%2F/e/{q(dest)}/q/{q(queue)}", json={})
    e2e = {"source": source, "vhost": "/", "destination": dest, "destination_type": "exchange",
           "routing_key": "a.#", "arguments": {}, "properties_key": "a.%23"}
    assert api.get_json(f"/exchanges/%2F/{q(source)}/bindings/source") == [e2e]
    assert api.get_json(f"/exchanges/%2F/{q(source)}/bindings/destination") == []
    assert api.get_json(f"/exchanges/%2F/{q(dest)}/bindings/destination") == [e2e]
    assert api.get_json(f"/exchanges/%2F/{q(dest)}/bindings/source") == [
        {"source": dest, "vhost": "/", "destination": queue, "destination_type": "queue",
         "routing_key": "", "arguments": {}, "properties_key": "~"},
    ]
    assert api.publish("a.b", "through two exchanges", exchange=source) == {"routed": True}
    assert [m["payload"] for m in api.get_messages(queue)] == ["through two exchanges"]
