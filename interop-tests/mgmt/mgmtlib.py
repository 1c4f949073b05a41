"""Helpers shared by the management HTTP API interop tests (imported as ``mgmtlib``).

MGMT_URL names the management listener without the /api suffix, e.g. http://127.0.0.1:15672
(credentials may be given in it, default guest:guest); AMQP_URL the broker's AMQP listener.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid

import pika
import requests

MGMT_URL = os.environ.get("MGMT_URL", "http://127.0.0.1:15672").rstrip("/")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

_mgmt = urllib.parse.urlsplit(MGMT_URL)
MGMT_HOST = _mgmt.hostname or "127.0.0.1"
MGMT_PORT = _mgmt.port or 15672
MGMT_USER = urllib.parse.unquote(_mgmt.username) if _mgmt.username else "guest"
MGMT_PASSWORD = urllib.parse.unquote(_mgmt.password) if _mgmt.password else "guest"
API = f"{_mgmt.scheme}://{MGMT_HOST}:{MGMT_PORT}{_mgmt.path}/api"

AMQP_PORT = urllib.parse.urlsplit(AMQP_URL).port or 5672
AMQP_USER = pika.URLParameters(AMQP_URL).credentials.username

# RabbitMQ refreshes the counters in the API (messages, consumers, a connection's channels ...)
# about every 5 s, and a new queue's statistics fields appear only after the first refresh.
# Warren's are immediate. Tests poll for them with this deadline; nothing asserts speed.
STATS_WAIT_S = float(os.environ.get("MGMT_STATS_WAIT", "30"))

# The error bodies RabbitMQ sends, to the byte once JSON-decoded.
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
LOGIN_FAILED = {"error": "not_authorized", "reason": "Login failed"}
ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}
WWW_AUTHENTICATE = 'Basic realm="RabbitMQ Management"'


def q(segment):
    """Percent-encode one path segment the way rabbitmqadmin and the HTTP clients do
    (``/`` -> ``%2F``, space -> ``%20``)."""
    return urllib.parse.quote(segment, safe="")


def unique(kind):
    return f"interop.mgmt.{kind}.{uuid.uuid4().hex[:12]}"


# -- AMQP ------------------------------------------------------------------------------------

# Connections opened through amqp_connect(); eventually() keeps their I/O (heartbeats) going
# while it polls, and the conftest closes them after each test.
OPEN_CONNECTIONS = []


def amqp_params(vhost=None, user=None, password=None, **overrides):
    p = pika.URLParameters(AMQP_URL)
    p.connection_attempts = 1
    p.socket_timeout = 10
    p.blocked_connection_timeout = 30
    if vhost is not None:
        p.virtual_host = vhost
    if user is not None:
        p.credentials = pika.PlainCredentials(user, password or "")
    for key, value in overrides.items():
        setattr(p, key, value)
    return p


def amqp_connect(vhost=None, user=None, password=None, name=None, **overrides):
    """A pika BlockingConnection (closed by the conftest after the test).
    name= sets the client-provided connection_name."""
    params = amqp_params(vhost, user, password, **overrides)
    if name is not None:
        params.client_properties = {"connection_name": name}
    conn = pika.BlockingConnection(params)
    OPEN_CONNECTIONS.append(conn)
    return conn


def local_port(conn):
    """The client-side TCP port of a pika BlockingConnection (the API's peer_port)."""
    return conn._impl._transport._sock.getsockname()[1]


def close_open_connections():
    while OPEN_CONNECTIONS:
        conn = OPEN_CONNECTIONS.pop()
        try:
            if conn.is_open:
                conn.close()
        except Exception:
            pass


def pump(seconds):
    """Wait, serving the I/O of the test's open AMQP connections meanwhile."""
    live = [c for c in OPEN_CONNECTIONS if c.is_open]
    if not live:
        time.sleep(seconds)
        return
    share = seconds / len(live)
    for conn in live:
        try:
            conn.process_data_events(time_limit=share)
        except Exception:
            # A connection the test expects to be closed by the broker: let the test see it.
            time.sleep(share)


def eventually(check, timeout=STATS_WAIT_S, interval=0.25, what=None):
    """Call check() until it returns without an AssertionError; return its result.

    For the broker's statistics, which RabbitMQ updates about every 5 s. On timeout the last
    AssertionError is raised with a note."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() >= deadline:
                note = f" waiting for {what}" if what else ""
                raise AssertionError(f"still failing after {timeout:.0f}s{note}: {exc}") from exc
        pump(interval)


# -- HTTP ------------------------------------------------------------------------------------


class Api:
    """A requests session on MGMT_URL/api with Basic auth; paths are relative to /api.

    Every create_* method registers what it made, and cleanup() (called by the api fixture at
    teardown) deletes it again, so tests are independent of each other."""

    def __init__(self, user=MGMT_USER, password=MGMT_PASSWORD):
        self.session = requests.Session()
        self.session.auth = (user, password)
        self._cleanup = []

    # raw calls
    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, API + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def get_json(self, path, **kwargs):
        r = self.get(path, **kwargs)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text!r}"
        return r.json()

    # creation helpers, tracked for cleanup
    def _created(self, r, what):
        assert r.status_code in (201, 204), f"creating {what}: {r.status_code} {r.text!r}"
        return r

    def create_queue(self, name=None, vhost="/", **body):
        name = name or unique("q")
        self._cleanup.append(f"/queues/{q(vhost)}/{q(name)}")
        self._created(self.put(f"/queues/{q(vhost)}/{q(name)}", json=body), f"queue {name}")
        return name

    def create_exchange(self, name=None, vhost="/", type="direct", **body):
        name = name or unique("x")
        body["type"] = type
        self._cleanup.append(f"/exchanges/{q(vhost)}/{q(name)}")
        self._created(self.put(f"/exchanges/{q(vhost)}/{q(name)}", json=body), f"exchange {name}")
        return name

    def create_vhost(self, name=None, **body):
        name = name or unique("vh")
        self._cleanup.append(f"/vhosts/{q(name)}")
        self._created(self.put(f"/vhosts/{q(name)}", json=body), f"vhost {name}")
        return name

    def create_user(self, name=None, password="interop-pw", tags="", **body):
        name = name or unique("user")
        body.setdefault("password", password)
        body["tags"] = tags
        if "password_hash" in body:
            del body["password"]
        self._cleanup.append(f"/users/{q(name)}")
        self._created(self.put(f"/users/{q(name)}", json=body), f"user {name}")
        return name

    def create_policy(self, pattern, definition, name=None, vhost="/", apply_to=None, **body):
        name = name or unique("pol")
        body.update(pattern=pattern, definition=definition)
        if apply_to is not None:
            body["apply-to"] = apply_to
        self._cleanup.append(f"/policies/{q(vhost)}/{q(name)}")
        self._created(self.put(f"/policies/{q(vhost)}/{q(name)}", json=body), f"policy {name}")
        return name

    def set_permissions(self, vhost, user, configure=".*", write=".*", read=".*"):
        self._cleanup.append(f"/permissions/{q(vhost)}/{q(user)}")
        body = {"configure": configure, "write": write, "read": read}
        self._created(self.put(f"/permissions/{q(vhost)}/{q(user)}", json=body), "permissions")

    def track(self, path):
        """Delete this API path at teardown (for objects made another way)."""
        self._cleanup.append(path)

    def cleanup(self):
        # Newest first: policies before their vhost, users after their permissions ...
        for path in reversed(self._cleanup):
            try:
                self.delete(path, timeout=10)
            except Exception:
                pass
        self._cleanup.clear()

    # reads that wait for RabbitMQ's statistics
    def queue_when(self, name, vhost="/", timeout=STATS_WAIT_S, **expected):
        """GET the queue until every expected field has the expected value; return it."""

        def check():
            obj = self.get_json(f"/queues/{q(vhost)}/{q(name)}")
            got = {k: obj.get(k, "<missing>") for k in expected}
            assert got == expected, f"queue {name}: {got} != {expected}"
            return obj

        return eventually(check, timeout, what=f"queue {name} fields {expected}")

    def publish(self, routing_key, payload, exchange="amq.default", vhost="/", encoding="string", properties=None):
        body = {
            "routing_key": routing_key,
            "payload": payload,
            "payload_encoding": encoding,
            "properties": properties or {},
        }
        r = self.post(f"/exchanges/{q(vhost)}/{q(exchange)}/publish", json=body)
        assert r.status_code == 200, f"publish: {r.status_code} {r.text!r}"
        return r.json()

    def get_messages(self, queue, count=1, ackmode="ack_requeue_false", encoding="auto", vhost="/", **extra):
        body = {"count": count, "ackmode": ackmode, "encoding": encoding, **extra}
        r = self.post(f"/queues/{q(vhost)}/{q(queue)}/get", json=body)
        assert r.status_code == 200, f"get: {r.status_code} {r.text!r}"
        return r.json()


def error_body(r):
    """The JSON error body of a response (asserting it is JSON)."""
    assert r.headers.get("content-type", "").startswith("application/json"), (
        f"{r.status_code} with content-type {r.headers.get('content-type')!r}: {r.text!r}"
    )
    return r.json()


def connection_for(api, conn, timeout=STATS_WAIT_S):
    """The API's object for a pika connection (found by its client port)."""
    port = local_port(conn)

    def check():
        rows = api.get_json("/connections")
        mine = [c for c in rows if c.get("peer_port") == port]
        assert len(mine) == 1, f"connection with peer_port {port} not listed"
        return mine[0]

    return eventually(check, timeout, what=f"the connection from port {port}")


# -- rabbitmqadmin ---------------------------------------------------------------------------

RABBITMQADMIN = os.environ.get("RABBITMQADMIN") or shutil.which("rabbitmqadmin") or "/usr/bin/rabbitmqadmin"


def have_rabbitmqadmin():
    return os.path.isfile(RABBITMQADMIN) and os.access(RABBITMQADMIN, os.X_OK)


def rabbitmqadmin(*args, user=MGMT_USER, password=MGMT_PASSWORD, vhost=None, fmt=None, stdin=None):
    """Run the unmodified rabbitmqadmin against MGMT_URL's host and port."""
    cmd = [RABBITMQADMIN, "-H", MGMT_HOST, "-P", str(MGMT_PORT), "-u", user, "-p", password]
    if vhost is not None:
        cmd += ["-V", vhost]
    if fmt is not None:
        cmd += ["-f", fmt]
    cmd += list(args)
    env = dict(os.environ, HOME=os.environ.get("MGMT_RABBITMQADMIN_HOME", "/nonexistent"))
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=env)


def parse_table(text):
    """rabbitmqadmin's ascii table -> (header cells, rows of cells), cells stripped."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].startswith("+"), f"not a table: {text!r}"
    cells = lambda line: [c.strip() for c in line.strip()[1:-1].split("|")]  # noqa: E731
    assert lines[1].startswith("|") and lines[2].startswith("+") and lines[-1].startswith("+"), text
    header = cells(lines[1])
    rows = [cells(line) for line in lines[3:-1]]
    for row in rows:
        assert len(row) == len(header), f"ragged table: {text!r}"
    return header, rows


def table_dicts(text):
    header, rows = parse_table(text)
    return header, [dict(zip(header, row)) for row in rows]


def pretty(obj):
    return json.dumps(obj, indent=1, sort_keys=True)


def render_table(header, rows):
    """The text rabbitmqadmin's default (table) format prints for these cells: a copy of its
    TableList (centred header, left-aligned cells), for comparing whole tables."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    bar = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells, align):
        return "|" + "|".join(" " + format(str(c), align + str(w)) + " " for c, w in zip(cells, widths)) + "|"

    return "\n".join([bar, line(header, "^"), bar] + [line(r, "<") for r in rows] + [bar]) + "\n"
