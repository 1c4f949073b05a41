"""What the pika TLS tests share: the broker under test, the certificates, TLS contexts,
pika connection parameters, a raw AMQP-over-TLS probe, and the management API.

Environment (run.sh sets it):
  AMQPS_URL  the broker's TLS listener, amqps://guest:guest@127.0.0.1:PORT/%2F
  AMQP_URL   its plain listener (optional; only the EXTERNAL-is-not-offered-there check uses it)
  MGMT_URL   its management API, without /api (guest:guest unless given in the URL)
  TLS_PKI    the directory make-pki.sh wrote (ca.pem, client.pem, client.key, client.dn, ...)
"""

import os
import socket
import ssl
import urllib.parse

import pika
import requests
from pamqp import commands, frame

AMQPS_URL = os.environ.get("AMQPS_URL", "amqps://guest:guest@127.0.0.1:5671/%2F")
AMQP_URL = os.environ.get("AMQP_URL", "")
MGMT_URL = os.environ.get("MGMT_URL", "http://127.0.0.1:15672").rstrip("/")
PKI = os.environ.get("TLS_PKI", "")

_url = urllib.parse.urlsplit(AMQPS_URL)
HOST = _url.hostname or "127.0.0.1"
PORT = _url.port or 5671
GUEST = pika.PlainCredentials(urllib.parse.unquote(_url.username or "guest"),
                              urllib.parse.unquote(_url.password or "guest"))
VHOST = urllib.parse.unquote(_url.path[1:]) if len(_url.path) > 1 else "/"

_mgmt = urllib.parse.urlsplit(MGMT_URL)
API = urllib.parse.urlunsplit((_mgmt.scheme, f"{_mgmt.hostname}:{_mgmt.port}", _mgmt.path + "/api", "", ""))
MGMT_AUTH = (urllib.parse.unquote(_mgmt.username or "guest"), urllib.parse.unquote(_mgmt.password or "guest"))

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
WAIT_S = 10

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def pki(name):
    return os.path.join(PKI, name)


def dn(name):
    """A certificate's subject as `openssl x509 -subject -nameopt RFC2253` prints it."""
    with open(pki(name + ".dn")) as f:
        return f.read().strip()


def context(ca="ca", cert="client", version=None):
    """A client TLS context trusting `ca`.pem, presenting `cert`.pem/.key (None: no certificate),
    limited to one TLS version ("1.2"/"1.3") when given."""
    ctx = ssl.create_default_context(cafile=pki(ca + ".pem"))
    if cert:
        ctx.load_cert_chain(pki(cert + ".pem"), pki(cert + ".key"))
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    return ctx


def params(ctx, credentials=None, **overrides):
    p = pika.ConnectionParameters(
        host=HOST,
        port=PORT,
        virtual_host=VHOST,
        credentials=credentials or GUEST,
        ssl_options=pika.SSLOptions(ctx, server_hostname=HOST),
        connection_attempts=1,
        socket_timeout=WAIT_S,
        stack_timeout=2 * WAIT_S,
        blocked_connection_timeout=30,
    )
    for key, value in overrides.items():
        setattr(p, key, value)
    return p


def connect(ctx, credentials=None):
    return pika.BlockingConnection(params(ctx, credentials))


def tls_socket(ctx):
    """A TCP connection to the TLS port with the TLS handshake done (the client's part of it)."""
    sock = socket.create_connection((HOST, PORT), timeout=WAIT_S)
    try:
        return ctx.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


def read_connection_start(sock):
    """Sends the AMQP header and returns the broker's connection.start (pamqp), or raises."""
    sock.sendall(PROTOCOL_HEADER)
    data = b""
    while True:
        if len(data) >= 7:
            size = int.from_bytes(data[3:7], "big")
            if len(data) >= size + 8:
                _, _, start = frame.unmarshal(data[: size + 8])
                assert isinstance(start, commands.Connection.Start), start
                return start
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the broker after {data!r}")
        data += chunk


def read_until_closed(sock, timeout=WAIT_S):
    """Reads until the broker closes the connection; returns what came. A reset counts as
    closed; no close within `timeout` raises socket.timeout."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


def mechanisms(start):
    m = start.mechanisms
    return (m.decode() if isinstance(m, bytes) else m).split()


def product(conn):
    p = conn._impl.server_properties.get("product")
    return p.decode() if isinstance(p, bytes) else p


class Mgmt:
    """Users and permissions over the management API; deletes what it made."""

    def __init__(self):
        self.users = []

    def _url(self, *parts):
        return API + "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)

    def put_user_without_password(self, name):
        r = requests.put(self._url("users", name), json={"password_hash": "", "tags": ""}, auth=MGMT_AUTH,
                         timeout=WAIT_S)
        assert r.status_code in (201, 204), (r.status_code, r.text)
        self.users.append(name)

    def permit(self, name, vhost=VHOST):
        r = requests.put(self._url("permissions", vhost, name),
                         json={"configure": ".*", "write": ".*", "read": ".*"}, auth=MGMT_AUTH, timeout=WAIT_S)
        assert r.status_code in (201, 204), (r.status_code, r.text)

    def cleanup(self):
        for name in self.users:
            requests.delete(self._url("users", name), auth=MGMT_AUTH, timeout=WAIT_S)
