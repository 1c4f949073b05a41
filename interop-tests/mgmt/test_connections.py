"""Connections, channels and consumers: the objects the API shows for a pika client, and
DELETE /api/connections/{name} (with X-Reason) closing it with 320 CONNECTION_FORCED."""

import re

import pika.exceptions
import pytest

from mgmtlib import AMQP_PORT, AMQP_USER, NOT_FOUND, amqp_connect, connection_for, error_body, eventually, local_port, q


def _consume(conn, queue, tag, prefetch=None):
    ch = conn.channel()
    if prefetch is not None:
        ch.basic_qos(prefetch_count=prefetch)
    ch.basic_consume(queue, lambda *a: None, consumer_tag=tag)
    return ch


def test_connection_object(api):
    conn = amqp_connect(name="interop-mgmt-conn")
    port = local_port(conn)
    c = connection_for(api, conn)
    assert c["name"] == f"127.0.0.1:{port} -> 127.0.0.1:{AMQP_PORT}"
    assert (c["peer_host"], c["peer_port"], c["host"], c["port"]) == ("127.0.0.1", port, "127.0.0.1", AMQP_PORT)
    assert (c["user"], c["vhost"], c["protocol"], c["type"]) == (AMQP_USER, "/", "AMQP 0-9-1", "network")
    assert c["auth_mechanism"] == "PLAIN"
    assert c["ssl"] is False
    assert c["state"] == "running"
    assert c["user_provided_name"] == "interop-mgmt-conn"
    assert c["client_properties"]["connection_name"] == "interop-mgmt-conn"
    assert c["client_properties"]["product"] == "Pika Python Client Library"
    assert c["client_properties"]["capabilities"]["consumer_cancel_notify"] is True
    assert c["node"] == api.get_json("/overview")["node"]
    for key in ("connected_at", "channel_max", "frame_max", "timeout", "recv_oct", "send_oct"):
        assert type(c.get(key)) is int, f"{key}: {c.get(key)!r}"
    assert c["frame_max"] == conn._impl.params.frame_max
    assert c["timeout"] == conn._impl.params.heartbeat
    one = api.get_json(f"/connections/{q(c['name'])}")
    assert one["name"] == c["name"]
    assert one["peer_port"] == port


def test_connection_channel_count(api):
    conn = amqp_connect()
    conn.channel()
    conn.channel()
    name = connection_for(api, conn)["name"]

    def check():
        [c] = [x for x in api.get_json("/connections") if x["name"] == name]
        assert c.get("channels") == 2, f"channels: {c.get('channels')!r}"

    eventually(check, what="the connection's channel count")


def test_missing_connection_is_404(api):
    for method in ("GET", "DELETE"):
        r = api.request(method, "/connections/" + q("127.0.0.1:1 -> 127.0.0.1:2"))
        assert r.status_code == 404, method
        assert error_body(r) == NOT_FOUND


def test_vhost_connections_and_channels(api):
    vhost = api.create_vhost()
    conn = amqp_connect(vhost=vhost)
    conn.channel()
    name = connection_for(api, conn)["name"]

    def check():
        conns = api.get_json(f"/vhosts/{q(vhost)}/connections")
        assert [c["name"] for c in conns] == [name]
        chans = api.get_json(f"/vhosts/{q(vhost)}/channels")
        assert [c["name"] for c in chans] == [f"{name} (1)"]

    eventually(check, what="the vhost's connections and channels")
    assert name not in [c["name"] for c in api.get_json("/vhosts/%2F/connections")]


def test_channel_object(api):
    queue = api.create_queue()
    conn = amqp_connect()
    _consume(conn, queue, "interop-tag", prefetch=7)
    cname = connection_for(api, conn)["name"]
    expected_name = f"{cname} (1)"

    def check():
        chans = api.get_json(f"/connections/{q(cname)}/channels")
        assert [c["name"] for c in chans] == [expected_name]
        c = chans[0]
        assert (c.get("consumer_count"), c.get("prefetch_count")) == (1, 7), c
        return c

    c = eventually(check, what="the channel's consumer and prefetch counts")
    assert c["number"] == 1
    assert (c["user"], c["vhost"], c["state"]) == (AMQP_USER, "/", "running")
    assert c["connection_details"] == {"name": cname, "peer_host": "127.0.0.1", "peer_port": local_port(conn)}
    assert (c["confirm"], c["transactional"]) == (False, False)
    assert (c["messages_unacknowledged"], c["messages_unconfirmed"], c["messages_uncommitted"]) == (0, 0, 0)
    assert c["global_prefetch_count"] == 0
    assert expected_name in [x["name"] for x in api.get_json("/channels")]
    one = api.get_json(f"/channels/{q(expected_name)}")
    assert (one["name"], one["number"]) == (expected_name, 1)


def test_consumer_object(api):
    queue = api.create_queue()
    conn = amqp_connect()
    _consume(conn, queue, "interop-consumer", prefetch=3)
    cname = connection_for(api, conn)["name"]

    def find(path):
        mine = [c for c in api.get_json(path) if c["consumer_tag"] == "interop-consumer" and c["queue"]["name"] == queue]
        assert len(mine) == 1, f"{path}: consumer not listed"
        return mine[0]

    c = eventually(lambda: find("/consumers"), what="the consumer")
    # Exactly these keys: rabbitmqadmin's "list consumers" shows every top-level scalar.
    assert set(c) == {"arguments", "ack_required", "active", "activity_status", "channel_details",
                      "consumer_tag", "exclusive", "prefetch_count", "queue"}
    assert c["queue"] == {"name": queue, "vhost": "/"}
    assert (c["ack_required"], c["exclusive"], c["active"], c["activity_status"]) == (True, False, True, "up")
    assert c["prefetch_count"] == 3
    assert c["arguments"] == {}
    assert c["channel_details"]["name"] == f"{cname} (1)"
    assert c["channel_details"]["connection_name"] == cname
    assert c["channel_details"]["number"] == 1
    assert c["channel_details"]["user"] == AMQP_USER
    assert (c["channel_details"]["peer_host"], c["channel_details"]["peer_port"]) == ("127.0.0.1", local_port(conn))
    assert find("/consumers/%2F") == c


def _expect_forced_close(conn, text):
    def closed():
        try:
            conn.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            return exc
        raise AssertionError("the connection is still open")

    exc = eventually(closed, timeout=15, what="the broker to close the connection")
    assert (exc.reply_code, exc.reply_text) == (320, text)


def test_close_connection_with_x_reason(api):
    conn = amqp_connect()
    name = connection_for(api, conn)["name"]
    r = api.delete(f"/connections/{q(name)}", headers={"X-Reason": "interop says bye"})
    assert (r.status_code, r.text) == (204, "")
    _expect_forced_close(conn, "CONNECTION_FORCED - interop says bye")
    eventually(lambda: _gone(api, name), what="the connection to leave the list")


def test_close_connection_default_reason(api):
    conn = amqp_connect()
    name = connection_for(api, conn)["name"]
    assert api.delete(f"/connections/{q(name)}").status_code == 204
    _expect_forced_close(conn, "CONNECTION_FORCED - Closed via management plugin")


def _gone(api, name):
    assert api.get(f"/connections/{q(name)}").status_code == 404


def test_paged_connections_filtered_by_name(api):
    conn = amqp_connect()
    name = connection_for(api, conn)["name"]
    port_part = name.split(" ")[0]
    page = api.get_json(f"/connections?page=1&name={q(port_part)}&columns=name,user")
    assert page["items"] == [{"name": name, "user": AMQP_USER}]
    assert (page["filtered_count"], page["item_count"], page["page"]) == (1, 1, 1)


@pytest.mark.parametrize("path", ["/connections", "/channels", "/consumers", "/vhosts/%2F/channels"])
def test_lists_are_lists(api, path):
    assert isinstance(api.get_json(path), list)


def test_connection_name_format(api):
    conn = amqp_connect()
    name = connection_for(api, conn)["name"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+", name), name
