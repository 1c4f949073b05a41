"""The real rabbitmqadmin (v1, the Python script from Debian's rabbitmq-server 3.10.8), unmodified,
pointed at MGMT_URL's host and port: every command a user would type, its output, exit codes and
error messages. Tables are compared whole where their content is deterministic (lists scoped to a
test's own vhost), else by header line and rows."""

import base64
import json
import re

import pika.exceptions
import pytest

from mgmtlib import (
    AMQP_PORT, AMQP_USER, MGMT_HOST, MGMT_USER, amqp_connect, eventually, have_rabbitmqadmin, local_port, parse_table, q,
    rabbitmqadmin, render_table, table_dicts, unique,
)

pytestmark = pytest.mark.skipif(not have_rabbitmqadmin(), reason="rabbitmqadmin not installed (Debian's rabbitmq-server package; or set RABBITMQADMIN)")

STANDARD_EXCHANGES = [
    ["", "direct"], ["amq.direct", "direct"], ["amq.fanout", "fanout"], ["amq.headers", "headers"],
    ["amq.match", "headers"], ["amq.rabbitmq.trace", "topic"], ["amq.topic", "topic"],
]
GET_HEADER = ["routing_key", "exchange", "message_count", "payload", "payload_bytes", "payload_encoding",
              "properties", "redelivered"]


def adm(*args, **kwargs):
    """rabbitmqadmin that must succeed; returns its stdout."""
    r = rabbitmqadmin(*args, **kwargs)
    assert (r.returncode, r.stderr) == (0, ""), f"rabbitmqadmin {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return r.stdout


def adm_fails(*args, **kwargs):
    """rabbitmqadmin that must fail with exit code 1; returns its error line (without '*** ')."""
    r = rabbitmqadmin(*args, **kwargs)
    assert r.returncode == 1, f"expected exit 1, got {r.returncode}: {r.stdout!r} {r.stderr!r}"
    assert r.stdout == ""
    assert r.stderr.startswith("*** ") and r.stderr.endswith("\n\n"), repr(r.stderr)
    return r.stderr[4:-2]


def eventually_table(args, expected_header, expected_rows, **kwargs):
    """Run a list command until it prints exactly this table (RabbitMQ's counts lag)."""
    want = render_table(expected_header, expected_rows)

    def check():
        out = adm(*args, **kwargs)
        assert out == want, f"\n{out}!=\n{want}"
        return out

    return eventually(check, what=f"rabbitmqadmin {' '.join(args)}")


# -- declare, list, delete ---------------------------------------------------------------------


def test_queues(api):
    vhost = api.create_vhost()
    assert adm("declare", "queue", "name=transient", "durable=false", vhost=vhost) == "queue declared\n"
    assert adm("declare", "queue", "name=durable", vhost=vhost) == "queue declared\n"
    assert adm("declare", "queue", "name=with-args", 'arguments={"x-max-length": 5}', "auto_delete=true",
               vhost=vhost) == "queue declared\n"
    got = {x["name"]: x for x in api.get_json(f"/queues/{q(vhost)}")}
    assert (got["transient"]["durable"], got["durable"]["durable"]) == (False, True)
    assert got["with-args"]["arguments"] == {"x-max-length": 5}
    assert got["with-args"]["auto_delete"] is True
    api.publish("durable", "one", vhost=vhost)
    eventually_table(["list", "queues"], ["name", "messages"],
                     [["durable", "1"], ["transient", "0"], ["with-args", "0"]], vhost=vhost)
    eventually_table(["list", "queues", "name", "durable", "auto_delete", "consumers"],
                     ["name", "durable", "auto_delete", "consumers"],
                     [["durable", "True", "False", "0"], ["transient", "False", "False", "0"],
                      ["with-args", "True", "True", "0"]], vhost=vhost)
    # Without -V every vhost is listed; our queues are among them.
    header, rows = parse_table(adm("list", "queues"))
    assert header == ["name", "messages"]
    assert ["with-args", "0"] in rows
    assert adm("delete", "queue", "name=transient", vhost=vhost) == "queue deleted\n"
    assert api.get(f"/queues/{q(vhost)}/transient").status_code == 404


def test_exchanges_and_bindings(api):
    vhost = api.create_vhost()
    assert adm("declare", "queue", "name=q1", vhost=vhost) == "queue declared\n"
    assert adm("declare", "exchange", "name=events", "type=topic", vhost=vhost) == "exchange declared\n"
    assert adm("declare", "exchange", "name=fan", "type=fanout", "durable=false", vhost=vhost) == "exchange declared\n"
    assert adm("declare", "binding", "source=events", "destination=q1", "routing_key=order.*",
               vhost=vhost) == "binding declared\n"
    assert adm("declare", "binding", "source=events", "destination=fan", "destination_type=exchange",
               "routing_key=audit.#", vhost=vhost) == "binding declared\n"
    assert adm("declare", "binding", "source=fan", "destination=q1", vhost=vhost) == "binding declared\n"
    x = api.get_json(f"/exchanges/{q(vhost)}/events")
    assert (x["type"], x["durable"], x["auto_delete"], x["internal"]) == ("topic", True, False, False)
    assert adm("list", "exchanges", vhost=vhost) == render_table(
        ["name", "type"], STANDARD_EXCHANGES + [["events", "topic"], ["fan", "fanout"]])
    assert adm("list", "bindings", vhost=vhost) == render_table(
        ["source", "destination", "routing_key"],
        [["", "q1", "q1"], ["events", "fan", "audit.#"], ["events", "q1", "order.*"], ["fan", "q1", ""]])
    header, rows = parse_table(adm("list", "bindings", "source", "destination", "destination_type", "properties_key",
                                   vhost=vhost))
    assert header == ["source", "destination", "destination_type", "properties_key"]
    assert ["events", "q1", "queue", "order.%2A"] in rows
    assert ["fan", "q1", "queue", "~"] in rows
    # routed / not routed through the bindings
    assert adm("publish", "exchange=events", "routing_key=order.new", "payload=o", vhost=vhost) == "Message published\n"
    assert adm("publish", "exchange=events", "routing_key=audit.x", "payload=a", vhost=vhost) == "Message published\n"
    assert adm("publish", "exchange=events", "routing_key=nothing", "payload=n",
               vhost=vhost) == "Message published but NOT routed\n"
    assert [m["payload"] for m in api.get_messages("q1", count=5, vhost=vhost)] == ["o", "a"]
    # delete a binding by the routing key as typed, and by the default "~"
    assert adm("delete", "binding", "source=events", "destination_type=queue", "destination=q1",
               "properties_key=order.*", vhost=vhost) == "binding deleted\n"
    assert adm("delete", "binding", "source=fan", "destination_type=queue", "destination=q1",
               vhost=vhost) == "binding deleted\n"
    assert adm("delete", "binding", "source=events", "destination_type=exchange", "destination=fan",
               "properties_key=audit.#", vhost=vhost) == "binding deleted\n"
    assert adm("list", "bindings", vhost=vhost) == render_table(["source", "destination", "routing_key"],
                                                                [["", "q1", "q1"]])
    assert adm("delete", "exchange", "name=events", vhost=vhost) == "exchange deleted\n"
    assert api.get(f"/exchanges/{q(vhost)}/events").status_code == 404


def test_vhosts_users_permissions(api):
    vhost, user = unique("vh"), unique("user")
    api.track(f"/vhosts/{q(vhost)}")
    api.track(f"/users/{q(user)}")
    assert adm("declare", "vhost", f"name={vhost}") == "vhost declared\n"
    assert adm("declare", "user", f"name={user}", "password=s3cret", "tags=management,monitoring") == "user declared\n"
    assert adm("declare", "permission", f"vhost={vhost}", f"user={user}", "configure=^cfg", "write=^w",
               "read=.*") == "permission declared\n"

    header, rows = table_dicts(adm("list", "vhosts"))
    assert header == ["name", "messages"]
    assert {"name": vhost, "messages": "0"} in rows or {"name": vhost, "messages": ""} in rows

    header, rows = table_dicts(adm("list", "users"))
    assert header == ["name", "hashing_algorithm", "password_hash", "tags"]
    [me] = [r for r in rows if r["name"] == user]
    assert me["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert me["tags"] == "management monitoring"
    assert me["password_hash"] == api.get_json(f"/users/{q(user)}")["password_hash"]

    header, rows = table_dicts(adm("list", "permissions"))
    assert header == ["vhost", "configure", "read", "user", "write"]
    assert {"vhost": vhost, "configure": "^cfg", "read": ".*", "user": user, "write": "^w"} in rows
    assert {"vhost": vhost, "configure": ".*", "read": ".*", "user": MGMT_USER, "write": ".*"} in rows

    # the new user can use the API with its password
    assert adm("list", "queues", user=user, password="s3cret", vhost=vhost) == "No items\n"
    assert adm("delete", "permission", f"vhost={vhost}", f"user={user}") == "permission deleted\n"
    assert adm("delete", "user", f"name={user}") == "user deleted\n"
    assert adm("delete", "vhost", f"name={vhost}") == "vhost deleted\n"
    assert api.get(f"/vhosts/{q(vhost)}").status_code == 404
    assert api.get(f"/users/{q(user)}").status_code == 404


def test_policies(api):
    vhost = api.create_vhost()
    assert adm("declare", "policy", "name=limit", "pattern=^lim\\.", 'definition={"max-length": 3}',
               "apply-to=queues", "priority=4", vhost=vhost) == "policy declared\n"
    assert api.get_json(f"/policies/{q(vhost)}/limit") == {
        "vhost": vhost, "name": "limit", "pattern": "^lim\\.", "apply-to": "queues",
        "definition": {"max-length": 3}, "priority": 4,
    }
    assert adm("declare", "policy", "name=plain", "pattern=.*", 'definition={"message-ttl":1000}',
               vhost=vhost) == "policy declared\n"
    header, rows = table_dicts(adm("list", "policies"))
    assert header == ["vhost", "name", "apply-to", "definition", "pattern", "priority"]
    assert {"vhost": vhost, "name": "limit", "apply-to": "queues", "definition": '{"max-length": 3}',
            "pattern": "^lim\\.", "priority": "4"} in rows
    assert {"vhost": vhost, "name": "plain", "apply-to": "all", "definition": '{"message-ttl": 1000}',
            "pattern": ".*", "priority": "0"} in rows
    adm("declare", "queue", "name=lim.q", vhost=vhost)
    api.queue_when("lim.q", vhost=vhost, policy="limit")
    assert adm("delete", "policy", "name=limit", vhost=vhost) == "policy deleted\n"
    assert adm("delete", "policy", "name=plain", vhost=vhost) == "policy deleted\n"
    assert api.get_json(f"/policies/{q(vhost)}") == []


def test_nodes(api):
    header, rows = table_dicts(adm("list", "nodes"))
    assert header == ["name", "type", "mem_used"]
    assert len(rows) == 1
    assert rows[0]["name"] == api.get_json("/overview")["node"]
    assert rows[0]["type"] == "disc"
    assert rows[0]["mem_used"].isdigit()


def test_show_overview(api):
    header, rows = table_dicts(adm("show", "overview"))
    assert header == ["rabbitmq_version", "cluster_name", "queue_totals.messages", "object_totals.queues"]
    assert len(rows) == 1
    overview = api.get_json("/overview")
    assert rows[0]["rabbitmq_version"] == overview["rabbitmq_version"]
    assert rows[0]["cluster_name"] == overview["cluster_name"]
    assert rows[0]["queue_totals.messages"].isdigit()
    assert rows[0]["object_totals.queues"].isdigit()


# -- connections, channels, consumers ----------------------------------------------------------


def test_connections_channels_consumers(api):
    vhost = api.create_vhost()
    api.create_queue("work", vhost=vhost)
    conn = amqp_connect(vhost=vhost)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    ch.basic_consume("work", lambda *a: None, consumer_tag="adm-consumer")
    name = f"127.0.0.1:{local_port(conn)} -> 127.0.0.1:{AMQP_PORT}"

    def listed():
        header, rows = table_dicts(adm("list", "connections"))
        assert header == ["name", "user", "channels"]
        assert {"name": name, "user": AMQP_USER, "channels": "1"} in rows, rows

    eventually(listed, what="the connection in 'list connections'")

    header, rows = table_dicts(adm("list", "channels"))
    assert header == ["name", "user"]
    assert {"name": f"{name} (1)", "user": AMQP_USER} in rows

    # consumers has no default columns: every top-level scalar, sorted
    expected = ["ack_required", "active", "activity_status", "consumer_tag", "exclusive", "prefetch_count"]
    eventually_table(["list", "consumers"], expected, [["True", "True", "up", "adm-consumer", "False", "5"]],
                     vhost=vhost)
    out = adm("list", "consumers", vhost=vhost, fmt="tsv")
    assert out == "\t".join(expected) + "\nTrue\tTrue\tup\tadm-consumer\tFalse\t5\n"


def test_close_connection(api):
    conn = amqp_connect()
    port = local_port(conn)

    def find():
        header, rows = table_dicts(adm("list", "connections"))
        mine = [r["name"] for r in rows if r["name"].startswith(f"127.0.0.1:{port} -> ")]
        assert len(mine) == 1, rows
        return mine[0]

    name = eventually(find, what="the connection in 'list connections'")
    assert adm("close", "connection", f"name={name}") == "connection closed\n"

    def closed():
        try:
            conn.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            return exc
        raise AssertionError("still open")

    exc = eventually(closed, timeout=15, what="the broker to close the connection")
    assert (exc.reply_code, exc.reply_text) == (320, "CONNECTION_FORCED - Closed via management plugin")


# -- publish, get, purge -----------------------------------------------------------------------


def _fill(vhost, queue, n):
    for i in range(n):
        assert adm("publish", f"routing_key={queue}", f"payload=m{i}", vhost=vhost) == "Message published\n"


def _get(vhost, queue, *extra):
    out = adm("get", f"queue={queue}", *extra, vhost=vhost)
    if out == "No items\n":
        return []
    header, rows = table_dicts(out)
    assert header == GET_HEADER
    return rows


def _row(queue, payload, remaining, redelivered):
    return {"routing_key": queue, "exchange": "", "message_count": str(remaining), "payload": payload,
            "payload_bytes": str(len(payload)), "payload_encoding": "string", "properties": "",
            "redelivered": str(redelivered)}


@pytest.mark.parametrize("ackmode,stays", [
    (None, True),  # rabbitmqadmin's default: ack_requeue_true
    ("ack_requeue_true", True),
    ("reject_requeue_true", True),
    ("ack_requeue_false", False),
    ("reject_requeue_false", False),
])
def test_get_count_2_with_each_ackmode(api, ackmode, stays):
    vhost = api.create_vhost()
    adm("declare", "queue", "name=q", vhost=vhost)
    _fill(vhost, "q", 3)
    extra = ["count=2"] + ([f"ackmode={ackmode}"] if ackmode else [])
    out = adm("get", "queue=q", *extra, vhost=vhost)
    assert out == render_table(GET_HEADER, [list(_row("q", "m0", 2, False).values()),
                                            list(_row("q", "m1", 1, False).values())])
    rest = _get(vhost, "q", "count=5", "ackmode=ack_requeue_false")
    if stays:
        assert rest == [_row("q", "m0", 2, True), _row("q", "m1", 1, True), _row("q", "m2", 0, False)]
    else:
        assert rest == [_row("q", "m2", 0, False)]
    assert adm("get", "queue=q", vhost=vhost) == "No items\n"


def test_publish_from_stdin_and_get_formats(api):
    vhost = api.create_vhost()
    adm("declare", "queue", "name=q", vhost=vhost)
    # without payload= rabbitmqadmin reads stdin and sends it base64-encoded
    assert adm("publish", "routing_key=q", vhost=vhost, stdin="from stdin") == "Message published\n"
    assert adm("publish", "routing_key=q", "payload=with props", 'properties={"content_type": "text/plain"}',
               vhost=vhost) == "Message published\n"
    raw = json.loads(adm("get", "queue=q", "count=2", vhost=vhost, fmt="raw_json"))
    assert raw[0]["payload"] == "from stdin"
    assert raw[0]["payload_encoding"] == "string"
    assert raw[1]["properties"] == {"content_type": "text/plain"}
    forced = json.loads(adm("get", "queue=q", "encoding=base64", vhost=vhost, fmt="raw_json"))
    assert base64.b64decode(forced[0]["payload"]) == b"from stdin"
    # tsv: a header line, then tab-separated rows. The "properties" column is there because RabbitMQ
    # sends "properties": [] for a message without properties (a nested object is not shown).
    lines = adm("get", "queue=q", "count=2", vhost=vhost, fmt="tsv").splitlines()
    assert lines[0].split("\t") == GET_HEADER
    assert lines[1].split("\t")[:4] == ["q", "", "1", "from stdin"]


def test_purge(api):
    vhost = api.create_vhost()
    adm("declare", "queue", "name=q", vhost=vhost)
    _fill(vhost, "q", 3)
    eventually_table(["list", "queues"], ["name", "messages"], [["q", "3"]], vhost=vhost)
    assert adm("purge", "queue", "name=q", vhost=vhost) == "queue purged\n"
    assert adm("get", "queue=q", vhost=vhost) == "No items\n"
    eventually_table(["list", "queues"], ["name", "messages"], [["q", "0"]], vhost=vhost)


# -- output formats ----------------------------------------------------------------------------


def test_raw_json_and_tsv_lists(api):
    vhost = api.create_vhost()
    for name in ("alpha", "beta"):
        adm("declare", "queue", f"name={name}", "durable=false", vhost=vhost)
    raw = json.loads(adm("list", "queues", vhost=vhost, fmt="raw_json"))
    assert [x["name"] for x in raw] == ["alpha", "beta"]
    assert all(x["vhost"] == vhost and x["durable"] is False for x in raw)

    def tsv():
        out = adm("list", "queues", vhost=vhost, fmt="tsv")
        assert out == "name\tmessages\nalpha\t0\nbeta\t0\n", repr(out)

    eventually(tsv, what="tsv queue list with counts")
    assert adm("list", "exchanges", "name", "type", vhost=vhost, fmt="tsv") == "name\ttype\n" + "".join(
        f"{n}\t{t}\n" for n, t in STANDARD_EXCHANGES)
    kvp = adm("list", "queues", "name", "durable", vhost=vhost, fmt="kvp")
    assert kvp == 'name="alpha" durable="False"\nname="beta" durable="False"\n'
    pretty = json.loads(adm("list", "queues", "name", vhost=vhost, fmt="pretty_json"))
    assert [x["name"] for x in pretty] == ["alpha", "beta"]


# -- export / import ---------------------------------------------------------------------------


def test_export_and_import(api, tmp_path):
    vhost = api.create_vhost()
    adm("declare", "queue", "name=q1", 'arguments={"x-max-length": 7}', vhost=vhost)
    adm("declare", "exchange", "name=x1", "type=topic", vhost=vhost)
    adm("declare", "binding", "source=x1", "destination=q1", "routing_key=a.#", vhost=vhost)
    adm("declare", "policy", "name=p1", "pattern=^q1$", 'definition={"message-ttl": 60000}', vhost=vhost)

    whole = tmp_path / "all.json"
    assert adm("export", str(whole)) == f'Exported definitions for {MGMT_HOST} to "{whole}"\n'
    everything = json.loads(whole.read_text())
    assert {"name": "q1", "vhost": vhost, "durable": True, "auto_delete": False,
            "arguments": {"x-max-length": 7}} in everything["queues"]

    path = tmp_path / "vhost.json"
    assert adm("export", str(path), vhost=vhost) == f'Exported definitions for {MGMT_HOST} to "{path}"\n'
    exported = json.loads(path.read_text())
    assert exported["queues"] == [{"name": "q1", "durable": True, "auto_delete": False, "arguments": {"x-max-length": 7}}]
    assert [b["routing_key"] for b in exported["bindings"]] == ["a.#"]

    for p in (f"/queues/{q(vhost)}/q1", f"/exchanges/{q(vhost)}/x1", f"/policies/{q(vhost)}/p1"):
        assert api.delete(p).status_code == 204
    # (rabbitmqadmin 3.10 swaps host and file in this message)
    assert adm("import", str(path), vhost=vhost) == (
        f'Uploaded definitions from "{MGMT_HOST}" to {path}. The import process may take some time. '
        "Consult server logs to track progress.\n")
    assert api.get_json(f"/definitions/{q(vhost)}") == exported
    assert adm("publish", "exchange=x1", "routing_key=a.b", "payload=back", vhost=vhost) == "Message published\n"
    api.queue_when("q1", vhost=vhost, policy="p1")


# -- errors ------------------------------------------------------------------------------------


def test_get_from_missing_queue(api):
    name = unique("missing")
    assert adm_fails("get", f"queue={name}") == f"Not found: /api/queues/%2F/{q(name)}/get"


def test_delete_missing_queue(api):
    name = unique("missing")
    assert adm_fails("delete", "queue", f"name={name}") == f"Not found: /api/queues/%2F/{q(name)}"


def test_wrong_password():
    assert adm_fails("list", "queues", password="interop-wrong-password") == "Access refused: /api/queues?columns=name,messages"


def test_inequivalent_declare_prints_the_reason(api):
    vhost = api.create_vhost()
    adm("declare", "queue", "name=q", "durable=false", vhost=vhost)
    assert adm_fails("declare", "queue", "name=q", vhost=vhost) == (
        f"inequivalent arg 'durable' for queue 'q' in vhost '{vhost}': received 'true' but current is 'false'")


def test_bad_policy_prints_the_reason(api):
    vhost = api.create_vhost()
    reason = adm_fails("declare", "policy", "name=p", "pattern=.*", 'definition={"max-length": 1}', "apply-to=bogus",
                       vhost=vhost)
    assert reason == "Validation failed\n\napply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'\n"


def test_unknown_vhost(api):
    assert re.fullmatch(r"Not found: /api/queues/interop-no-such-vhost\?columns=name,messages",
                        adm_fails("list", "queues", vhost="interop-no-such-vhost"))
    assert adm_fails("declare", "queue", "name=q", vhost="interop-no-such-vhost") == (
        "Not found: /api/queues/interop-no-such-vhost/q")


def test_close_missing_connection(api):
    assert adm_fails("close", "connection", "name=127.0.0.1:1 -> 127.0.0.1:2") == (
        "Not found: /api/connections/" + q("127.0.0.1:1 -> 127.0.0.1:2"))
