"""Bindings: POST /api/bindings/{v}/e/{x}/q|e/{dest} (201 with a relative Location),
GET/DELETE by properties_key, the binding lists, and the errors."""

from mgmtlib import NOT_FOUND, error_body, q, unique


def _binding(source, dest, routing_key="", arguments=None, properties_key=None, dest_type="queue", vhost="/"):
    return {
        "source": source, "vhost": vhost, "destination": dest, "destination_type": dest_type,
        "routing_key": routing_key, "arguments": arguments or {},
        "properties_key": properties_key if properties_key is not None else routing_key,
    }


def test_post_binding_201_with_relative_location(api):
    exchange = api.create_exchange(type="direct")
    queue = api.create_queue()
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "rk", "arguments": {}})
    assert r.status_code == 201
    assert r.text == ""
    assert r.headers["location"] == f"{queue}/rk"
    # The empty routing key without arguments is "~".
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={})
    assert r.status_code == 201
    assert r.headers["location"] == f"{queue}/~"
    # Binding again is not an error.
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "rk"})
    assert r.status_code == 201
    assert r.headers["location"] == f"{queue}/rk"
    assert api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}") == [
        _binding(exchange, queue, "", properties_key="~"),
        _binding(exchange, queue, "rk"),
    ]


def test_binding_with_arguments_has_a_hashed_properties_key(api):
    exchange = api.create_exchange(type="headers")
    queue = api.create_queue()
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}",
                 json={"routing_key": "k", "arguments": {"x-match": "any", "a": 1}})
    assert r.status_code == 201
    location = r.headers["location"]
    assert location.startswith(f"{queue}/k~"), location
    [listed] = api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}")
    assert listed["arguments"] == {"x-match": "any", "a": 1}
    assert listed["properties_key"].startswith("k~")
    assert location == f"{queue}/{q(listed['properties_key'])}"
    # The key is opaque to clients: they delete with what the listing said.
    r = api.delete(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/{q(listed['properties_key'])}")
    assert r.status_code == 204
    assert api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}") == []


def test_get_and_delete_one_binding(api):
    exchange = api.create_exchange(type="topic")
    queue = api.create_queue()
    api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "a.b"})
    assert api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/a.b") == _binding(exchange, queue, "a.b")
    r = api.get(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/other")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    r = api.delete(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/a.b")
    assert (r.status_code, r.text) == (204, "")
    r = api.delete(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/a.b")
    assert r.status_code == 404
    assert error_body(r) == NOT_FOUND
    assert api.publish("a.b", "unbound", exchange=exchange) == {"routed": False}


def test_routing_key_with_special_characters(api):
    """properties_key is the routing key with every byte outside [A-Za-z0-9._-] percent-encoded
    (upper-case hex, UTF-8), a space as '+', '~' as %7E; the Location header percent-encodes
    that once more as a path segment."""
    exchange = api.create_exchange(type="topic")
    queue = api.create_queue()
    key = "a#b~c d.e-f_g*h/i%j+ké"
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": key})
    assert r.status_code == 201
    [listed] = api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}")
    assert listed["routing_key"] == key
    assert listed["properties_key"] == "a%23b%7Ec+d.e-f_g%2Ah%2Fi%25j%2Bk%C3%A9"
    assert r.headers["location"] == f"{queue}/{q(listed['properties_key'])}"
    r = api.delete(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}/{q(listed['properties_key'])}")
    assert r.status_code == 204
    assert api.get_json(f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}") == []


def test_exchange_to_exchange_binding(api):
    source = api.create_exchange(type="topic")
    dest = api.create_exchange(type="fanout")
    queue = api.create_queue()
    r = api.post(f"/bindings/%2F/e/{q(source)}/e/{q(dest)}", json={"routing_key": "x.*"})
    assert r.status_code == 201
    assert r.headers["location"] == f"{dest}/x.%252A"
    api.post(f"/bindings/%2F/e/{q(dest)}/q/{q(queue)}", json={})
    assert api.get_json(f"/bindings/%2F/e/{q(source)}/e/{q(dest)}") == [
        _binding(source, dest, "x.*", properties_key="x.%2A", dest_type="exchange"),
    ]
    assert api.publish("x.y", "e2e", exchange=source) == {"routed": True}
    assert api.publish("z", "nope", exchange=source) == {"routed": False}
    assert [m["payload"] for m in api.get_messages(queue, count=5)] == ["e2e"]
    assert api.delete(f"/bindings/%2F/e/{q(source)}/e/{q(dest)}/{q('x.%2A')}").status_code == 204
    assert api.publish("x.y", "e2e", exchange=source) == {"routed": False}


def test_binding_lists_include_default_bindings(api):
    vhost = api.create_vhost()
    queue = api.create_queue(vhost=vhost)
    exchange = api.create_exchange(vhost=vhost, type="direct")
    api.post(f"/bindings/{q(vhost)}/e/{q(exchange)}/q/{q(queue)}", json={"routing_key": "k"})
    expected = [
        _binding("", queue, queue, vhost=vhost),
        _binding(exchange, queue, "k", vhost=vhost),
    ]
    assert api.get_json(f"/bindings/{q(vhost)}") == expected
    everywhere = api.get_json("/bindings")
    for b in expected:
        assert b in everywhere


def test_binding_to_missing_objects_is_404(api):
    exchange = api.create_exchange()
    queue = api.create_queue()
    missing_q, missing_x = unique("missing"), unique("missing")
    r = api.post(f"/bindings/%2F/e/{q(exchange)}/q/{q(missing_q)}", json={"routing_key": "k"})
    assert r.status_code == 404
    assert error_body(r) == {"error": "not_found", "reason": f"no queue '{missing_q}' in vhost '/'"}
    r = api.post(f"/bindings/%2F/e/{q(missing_x)}/q/{q(queue)}", json={"routing_key": "k"})
    assert r.status_code == 404
    assert error_body(r) == {"error": "not_found", "reason": f"no exchange '{missing_x}' in vhost '/'"}


def test_listing_bindings_between_missing_objects_is_an_empty_list(api):
    r = api.get(f"/bindings/%2F/e/{q(unique('missing'))}/q/{q(unique('missing'))}")
    assert r.status_code == 200
    assert r.json() == []
