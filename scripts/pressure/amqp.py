"""Just enough AMQP 0-9-1 on raw sockets for the pressure tests: frames, the handshake, and the
few methods they send. No client library: the tests need clients that misbehave on purpose
(never read their socket, ignore connection.blocked) and thousands of them in one process.

Also the broker-side measurements the scenarios share (RSS, CPU time, open fds from /proc).
"""

import asyncio
import os
import struct
import time

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

CONNECTION_START, CONNECTION_START_OK = (10, 10), (10, 11)
CONNECTION_TUNE, CONNECTION_TUNE_OK = (10, 30), (10, 31)
CONNECTION_OPEN, CONNECTION_OPEN_OK = (10, 40), (10, 41)
CONNECTION_CLOSE, CONNECTION_CLOSE_OK = (10, 50), (10, 51)
CONNECTION_BLOCKED, CONNECTION_UNBLOCKED = (10, 60), (10, 61)
CHANNEL_OPEN, CHANNEL_OPEN_OK = (20, 10), (20, 11)
QUEUE_DECLARE, QUEUE_DECLARE_OK = (50, 10), (50, 11)
QUEUE_PURGE, QUEUE_PURGE_OK = (50, 30), (50, 31)
BASIC_QOS, BASIC_QOS_OK = (60, 10), (60, 11)
BASIC_CONSUME, BASIC_CONSUME_OK = (60, 20), (60, 21)
BASIC_PUBLISH, BASIC_DELIVER = (60, 40), (60, 60)
BASIC_GET, BASIC_GET_OK, BASIC_GET_EMPTY = (60, 70), (60, 71), (60, 72)
BASIC_ACK = (60, 80)
CONFIRM_SELECT, CONFIRM_SELECT_OK = (85, 10), (85, 11)


# --- encoding -----------------------------------------------------------------------------


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def table(d):
    out = b""
    for k, v in d.items():
        out += shortstr(k)
        if isinstance(v, bool):
            out += b"t" + (b"\x01" if v else b"\x00")
        elif isinstance(v, int):
            out += b"l" + struct.pack(">q", v)
        elif isinstance(v, dict):
            out += b"F" + table(v)
        else:
            out += b"S" + longstr(str(v))
    return struct.pack(">I", len(out)) + out


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method(channel, cm, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack(">HH", *cm) + args)


def bits(*flags):
    return struct.pack("B", sum(1 << i for i, f in enumerate(flags) if f))


def start_ok(user="guest", password="guest", blocked_capability=True):
    props = {"product": "warren-pressure", "capabilities": {"connection.blocked": blocked_capability}}
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    return method(0, CONNECTION_START_OK, table(props) + shortstr("PLAIN") + longstr(response) + shortstr("en_US"))


def tune_ok(frame_max=131072, heartbeat=0):
    return method(0, CONNECTION_TUNE_OK, struct.pack(">HIH", 2047, frame_max, heartbeat))


def connection_open(vhost="/"):
    return method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + bits(False))


def connection_close():
    return method(0, CONNECTION_CLOSE, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))


def channel_open(ch=1):
    return method(ch, CHANNEL_OPEN, shortstr(""))


def queue_declare(ch, queue, durable=False, auto_delete=False, passive=False):
    return method(
        ch, QUEUE_DECLARE, struct.pack(">H", 0) + shortstr(queue) + bits(passive, durable, False, auto_delete, False) + table({})
    )


def queue_purge(ch, queue):
    return method(ch, QUEUE_PURGE, struct.pack(">H", 0) + shortstr(queue) + bits(False))


def basic_qos(ch, prefetch):
    return method(ch, BASIC_QOS, struct.pack(">IH", 0, prefetch) + bits(False))


def basic_consume(ch, queue, tag="", no_ack=True):
    return method(ch, BASIC_CONSUME, struct.pack(">H", 0) + shortstr(queue) + shortstr(tag) + bits(False, no_ack, False, False) + table({}))


def basic_get(ch, queue, no_ack=True):
    return method(ch, BASIC_GET, struct.pack(">H", 0) + shortstr(queue) + bits(no_ack))


def confirm_select(ch):
    return method(ch, CONFIRM_SELECT, bits(False))


def publish(ch, exchange, routing_key, body, persistent=False, frame_max=131072):
    """basic.publish, its content header and the body frames, as one byte string."""
    out = method(ch, BASIC_PUBLISH, struct.pack(">H", 0) + shortstr(exchange) + shortstr(routing_key) + bits(False, False))
    # Property flags: only delivery-mode (bit 12) when persistent.
    props = struct.pack(">HB", 1 << 12, 2) if persistent else struct.pack(">H", 0)
    out += frame(FRAME_HEADER, ch, struct.pack(">HHQ", 60, 0, len(body)) + props)
    step = frame_max - 8
    for i in range(0, len(body), step):
        out += frame(FRAME_BODY, ch, body[i : i + step])
    return out


# --- decoding -----------------------------------------------------------------------------


class ProtocolError(Exception):
    pass


def parse_frames(buf):
    """Complete frames at the front of `buf`: ([(type, channel, payload)], bytes consumed)."""
    frames, pos = [], 0
    while len(buf) - pos >= 7:
        kind, channel, size = struct.unpack_from(">BHI", buf, pos)
        if len(buf) - pos < 8 + size:
            break
        if buf[pos + 7 + size] != 0xCE:
            raise ProtocolError("bad frame end")
        frames.append((kind, channel, bytes(buf[pos + 7 : pos + 7 + size])))
        pos += 8 + size
    return frames, pos


def method_id(payload):
    return struct.unpack_from(">HH", payload, 0)


def close_reason(payload):
    code = struct.unpack_from(">H", payload, 4)[0]
    n = payload[6]
    return f"{code} {payload[7:7 + n].decode(errors='replace')}"


class AsyncConn:
    """One asyncio connection: read methods in order, skipping heartbeats."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.buf = reader, writer, bytearray()

    @classmethod
    async def open(cls, host, port, vhost="/", heartbeat=0):
        reader, writer = await asyncio.open_connection(host, port)
        c = cls(reader, writer)
        writer.write(PROTOCOL_HEADER)
        await c.expect(0, CONNECTION_START)
        writer.write(start_ok())
        await c.expect(0, CONNECTION_TUNE)
        writer.write(tune_ok(heartbeat=heartbeat) + connection_open(vhost))
        await c.expect(0, CONNECTION_OPEN_OK)
        return c

    async def next_frame(self):
        while True:
            if len(self.buf) >= 7:
                kind, channel, size = struct.unpack_from(">BHI", self.buf, 0)
                if len(self.buf) >= 8 + size:
                    if self.buf[7 + size] != 0xCE:
                        raise ProtocolError("bad frame end")
                    payload = bytes(self.buf[7 : 7 + size])
                    del self.buf[: 8 + size]
                    return kind, channel, payload
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("connection closed by the broker")
            self.buf += data

    async def expect(self, channel, cm):
        while True:
            kind, ch, payload = await self.next_frame()
            if kind == FRAME_HEARTBEAT:
                continue
            if kind != FRAME_METHOD:
                raise ProtocolError(f"expected method {cm}, got frame type {kind}")
            got = method_id(payload)
            if got == CONNECTION_CLOSE:
                raise ProtocolError(f"connection closed: {close_reason(payload)}")
            if (ch, got) == (channel, cm):
                return payload
            if got in (CONNECTION_BLOCKED, CONNECTION_UNBLOCKED):
                continue
            raise ProtocolError(f"expected {cm} on {channel}, got {got} on {ch}")

    async def close(self, timeout=5.0):
        try:
            self.writer.write(connection_close())
            await asyncio.wait_for(self.expect(0, CONNECTION_CLOSE_OK), timeout)
        finally:
            self.writer.close()


# --- measurements of the broker process ---------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, key):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(pid):
    return status_kib(pid, "VmRSS") / 1024


def hwm_mib(pid):
    return status_kib(pid, "VmHWM") / 1024


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class CpuMeter:
    """The broker's CPU use between two points in time, as a fraction of one core."""

    def __init__(self, pid):
        self.pid, self.t0, self.c0 = pid, time.monotonic(), cpu_seconds(pid)

    def seconds(self):
        return cpu_seconds(self.pid) - self.c0

    def fraction(self):
        return self.seconds() / max(time.monotonic() - self.t0, 1e-9)


def result(name, **figures):
    """The one line run.sh collects: `RESULT <scenario> key=value ...`."""
    parts = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"RESULT {name} {parts}", flush=True)
    out = os.environ.get("PRESSURE_RESULTS")
    if out:
        with open(out, "a") as f:
            f.write(f"{name} {parts}\n")
