#!/usr/bin/env python3
"""A minimal AMQP 0-9-1 client on the standard library, so the ctl interop test needs no venv.

  amqp_peer.py publish AMQP_URL QUEUE COUNT
      publish COUNT persistent messages to QUEUE through the default exchange, then close
  amqp_peer.py hold AMQP_URL CONNECTION_NAME QUEUE
      open a connection named CONNECTION_NAME (client property connection_name), a channel and
      a consumer on QUEUE (tag CONNECTION_NAME-tag); print "ready"; wait up to 120 s for the
      broker to close the connection; print "closed CODE TEXT" and exit 0 (1 if it never does)
"""
import socket
import struct
import sys
import urllib.parse

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_END = 1, 2, 3, 0xCE


def shortstr(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(entries):
    body = b"".join(shortstr(k) + b"S" + longstr(v) for k, v in entries.items())
    return struct.pack(">I", len(body)) + body


class Peer:
    def __init__(self, url, name=None):
        u = urllib.parse.urlparse(url)
        vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5672), timeout=30)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, 10, 10)  # connection.start
        props = {"product": "warren ctl interop"}
        if name:
            props["connection_name"] = name
        user = urllib.parse.unquote(u.username or "guest")
        password = urllib.parse.unquote(u.password or "guest")
        self.method(0, 10, 11, table(props) + shortstr("PLAIN") + longstr("\0%s\0%s" % (user, password)) + shortstr("en_US"))
        args = self.expect(0, 10, 30)  # connection.tune
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", args[:8])
        self.method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        self.method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        self.expect(0, 10, 41)  # connection.open-ok
        self.method(1, 20, 10, shortstr(""))
        self.expect(1, 20, 11)  # channel.open-ok

    def frame(self, kind, channel, payload):
        self.sock.sendall(struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([FRAME_END]))

    def method(self, channel, cls, mth, args):
        self.frame(FRAME_METHOD, channel, struct.pack(">HH", cls, mth) + args)

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the broker closed the socket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next_method(self):
        while True:
            kind, channel, size = struct.unpack(">BHI", self.read(7))
            payload = self.read(size + 1)[:-1]
            if kind == FRAME_METHOD:
                cls, mth = struct.unpack(">HH", payload[:4])
                return channel, cls, mth, payload[4:]

    def expect(self, channel, cls, mth):
        got = self.next_method()
        if got[:3] != (channel, cls, mth):
            raise RuntimeError("expected %s, got %s %r" % ((channel, cls, mth), got[:3], got[3][:80]))
        return got[3]

    def publish(self, queue, body):
        self.method(1, 60, 40, struct.pack(">H", 0) + shortstr("") + shortstr(queue) + b"\x00")
        # content header: class 60, weight 0, body size, flags: delivery-mode only (bit 12)
        self.frame(FRAME_HEADER, 1, struct.pack(">HHQH", 60, 0, len(body), 1 << 12) + b"\x02")
        self.frame(FRAME_BODY, 1, body)

    def close(self):
        self.method(0, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
        self.expect(0, 10, 51)
        self.sock.close()


def main(argv):
    if len(argv) == 5 and argv[1] == "publish":
        peer = Peer(argv[2])
        for i in range(int(argv[4])):
            peer.publish(argv[3], b"message %d" % i)
        # A synchronous round trip after the publishes: they have been handled once it answers.
        peer.method(1, 85, 10, b"\x00")  # confirm.select
        peer.expect(1, 85, 11)
        peer.close()
        return 0
    if len(argv) == 5 and argv[1] == "hold":
        peer = Peer(argv[2], argv[3])
        tag = argv[3] + "-tag"
        peer.method(1, 60, 20, struct.pack(">H", 0) + shortstr(argv[4]) + shortstr(tag) + b"\x00" + table({}))
        peer.expect(1, 60, 21)  # basic.consume-ok
        print("ready", flush=True)
        peer.sock.settimeout(120)
        try:
            while True:
                channel, cls, mth, args = peer.next_method()
                if (channel, cls, mth) == (0, 10, 50):
                    code = struct.unpack(">H", args[:2])[0]
                    text = args[3 : 3 + args[2]].decode()
                    peer.method(0, 10, 51, b"")
                    print("closed %d %s" % (code, text), flush=True)
                    return 0
        except (socket.timeout, EOFError) as e:
            print("not closed: %s" % e, flush=True)
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
