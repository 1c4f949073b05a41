"""/api/overview, /api/whoami, /api/nodes, /api/cluster-name, /api/extensions: the fields that
rabbitmqadmin, the Go and Rust HTTP clients and the Nagios checks read."""

from mgmtlib import AMQP_PORT, MGMT_USER, NOT_FOUND, error_body, eventually, q


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def test_overview_fields(api):
    o = api.get_json("/overview")
    for key in ("product_name", "product_version", "rabbitmq_version", "management_version", "cluster_name", "node"):
        assert isinstance(o.get(key), str) and o[key], f"{key}: {o.get(key)!r}"
    totals = o["queue_totals"]
    assert isinstance(totals, dict)
    objects = o["object_totals"]
    for key in ("connections", "channels", "exchanges", "queues", "consumers"):
        assert _is_count(objects.get(key)), f"object_totals.{key}: {objects.get(key)!r}"
    assert isinstance(o["exchange_types"], list)
    assert {"direct", "fanout", "topic", "headers"} <= {t["name"] for t in o["exchange_types"]}
    for t in o["exchange_types"]:
        assert set(t) >= {"name", "description", "enabled"}


def test_overview_queue_totals_count_messages(api):
    """queue_totals holds integer counts; they include a message we published (other tests and
    users may add and remove messages meanwhile, so only a lower bound is checked)."""
    name = api.create_queue()
    api.publish(name, "counted")
    api.queue_when(name, messages=1)

    def check():
        totals = api.get_json("/overview")["queue_totals"]
        for key in ("messages", "messages_ready", "messages_unacknowledged"):
            assert _is_count(totals.get(key)), f"queue_totals.{key}: {totals.get(key)!r}"
        assert totals["messages"] >= 1
        return totals

    eventually(check, what="queue_totals")


def test_overview_listeners_include_amqp(api):
    listeners = api.get_json("/overview")["listeners"]
    for listener in listeners:
        assert set(listener) >= {"node", "protocol", "ip_address", "port"}, listener
        assert isinstance(listener["port"], int)
    amqp = [entry for entry in listeners if entry["protocol"] == "amqp"]
    assert [entry["port"] for entry in amqp] == [AMQP_PORT]


def test_overview_columns_as_rabbitmqadmin_show_overview_asks(api):
    """rabbitmqadmin show overview sends these columns, then reads queue_totals.messages and
    object_totals.queues itself: the nested objects must survive the column filter."""
    o = api.get_json("/overview?columns=rabbitmq_version,cluster_name,queue_totals.messages,object_totals.queues")
    assert set(o) == {"rabbitmq_version", "cluster_name", "queue_totals", "object_totals"}
    assert _is_count(o["queue_totals"]["messages"])
    assert _is_count(o["object_totals"]["queues"])


def test_whoami(api):
    who = api.get_json("/whoami")
    assert who["name"] == MGMT_USER
    assert isinstance(who["tags"], list)
    assert "administrator" in who["tags"]


def test_nodes(api):
    nodes = api.get_json("/nodes")
    assert isinstance(nodes, list) and len(nodes) >= 1
    node = nodes[0]
    assert node["name"] == api.get_json("/overview")["node"]
    assert node["running"] is True
    assert node["type"] == "disc"
    for key in ("mem_used", "mem_limit", "fd_used", "fd_total", "sockets_used", "sockets_total",
                "proc_used", "proc_total", "uptime", "disk_free", "disk_free_limit"):
        assert _is_count(node.get(key)), f"{key}: {node.get(key)!r}"
    assert node["mem_alarm"] is False
    assert node["disk_free_alarm"] is False
    assert node["partitions"] == []


def test_one_node(api):
    name = api.get_json("/overview")["node"]
    node = api.get_json(f"/nodes/{q(name)}")
    assert node["name"] == name
    assert node["running"] is True


def test_cluster_name(api):
    assert api.get_json("/cluster-name") == {"name": api.get_json("/overview")["cluster_name"]}


def test_extensions_is_a_list(api):
    assert isinstance(api.get_json("/extensions"), list)


def test_vhost_not_found_on_vhost_scoped_lists(api):
    for path in ("/queues/interop-no-such-vhost", "/exchanges/interop-no-such-vhost",
                 "/bindings/interop-no-such-vhost", "/vhosts/interop-no-such-vhost"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert error_body(r) == NOT_FOUND, path
