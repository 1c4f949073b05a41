"""A publisher that ignores connection.blocked, against a broker with a low memory watermark.

It announces the connection.blocked capability, then publishes transient messages into a queue
nobody consumes as fast as its socket takes them, and keeps trying to write after the broker says
`connection.blocked` (a non-blocking socket: every refused write is retried after 10 ms). The
broker must stop reading the socket: the bytes it takes after the alarm are bounded by the socket
buffers, its RSS stays near the watermark, it stays up and serves other connections. Then the
queue is purged: the alarm should clear, `connection.unblocked` arrive, and writes flow again.

usage: ignore_blocked.py HOST PORT BROKER_PID [--duration S] [--size B]
"""

import argparse
import asyncio
import select
import socket
import sys
import time

import amqp

QUEUE = "pressure-flood"


def handshake(host, port):
    s = socket.create_connection((host, port))
    buf = bytearray()

    def expect(channel, cm):
        while True:
            while len(buf) >= 7 and len(buf) >= 8 + int.from_bytes(buf[3:7], "big"):
                kind, ch, size = buf[0], int.from_bytes(buf[1:3], "big"), int.from_bytes(buf[3:7], "big")
                payload = bytes(buf[7 : 7 + size])
                del buf[: 8 + size]
                if kind == amqp.FRAME_METHOD and (ch, amqp.method_id(payload)) == (channel, cm):
                    return payload
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            buf.extend(data)

    s.sendall(amqp.PROTOCOL_HEADER)
    expect(0, amqp.CONNECTION_START)
    s.sendall(amqp.start_ok(blocked_capability=True))
    expect(0, amqp.CONNECTION_TUNE)
    s.sendall(amqp.tune_ok() + amqp.connection_open("/") + amqp.channel_open(1) + amqp.queue_declare(1, QUEUE))
    expect(0, amqp.CONNECTION_OPEN_OK)
    expect(1, amqp.CHANNEL_OPEN_OK)
    expect(1, amqp.QUEUE_DECLARE_OK)
    s.setblocking(False)
    return s


class Flooder:
    """Writes publishes for as long as asked, whatever the broker says; reads what it says."""

    def __init__(self, sock, size):
        self.sock, self.inbox = sock, bytearray()
        self.batch = b"".join(amqp.publish(1, "", QUEUE, bytes(size)) for _ in range(16))
        self.pos = 0
        self.written = 0
        self.refused_writes = 0
        self.events = []  # (time, "blocked" | "unblocked", bytes written until then)

    def read(self, now):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                raise ConnectionError("the broker closed the connection")
            self.inbox.extend(data)
            frames, used = amqp.parse_frames(self.inbox)
            del self.inbox[:used]
            for kind, _, payload in frames:
                if kind != amqp.FRAME_METHOD:
                    continue
                m = amqp.method_id(payload)
                if m == amqp.CONNECTION_BLOCKED:
                    self.events.append((now, "blocked", self.written))
                elif m == amqp.CONNECTION_UNBLOCKED:
                    self.events.append((now, "unblocked", self.written))
                elif m == amqp.CONNECTION_CLOSE:
                    raise ConnectionError(f"the broker closed the connection: {amqp.close_reason(payload)}")

    def run(self, seconds, on_tick):
        end = time.monotonic() + seconds
        next_tick = time.monotonic()
        while (now := time.monotonic()) < end:
            self.read(now)
            try:
                n = self.sock.send(self.batch[self.pos :])
                self.written += n
                self.pos = (self.pos + n) % len(self.batch)
            except BlockingIOError:
                self.refused_writes += 1
                select.select([self.sock], [self.sock], [], 0.01)
            if now >= next_tick:
                on_tick(now)
                next_tick = now + 0.5

    def state(self):
        return self.events[-1][1] if self.events else "running"


async def fresh_connection_works(host, port):
    c = await asyncio.wait_for(amqp.AsyncConn.open(host, port), 10)
    c.writer.write(amqp.channel_open(1) + amqp.queue_declare(1, "pressure-other"))
    await c.expect(1, amqp.CHANNEL_OPEN_OK)
    await c.expect(1, amqp.QUEUE_DECLARE_OK)
    await c.close()
    return True


def purge(host, port):
    async def go():
        c = await amqp.AsyncConn.open(host, port)
        c.writer.write(amqp.channel_open(1) + amqp.queue_purge(1, QUEUE))
        await c.expect(1, amqp.CHANNEL_OPEN_OK)
        ok = await c.expect(1, amqp.QUEUE_PURGE_OK)
        await c.close()
        return int.from_bytes(ok[4:8], "big")

    return asyncio.run(go())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--size", type=int, default=16384)
    a = ap.parse_args()

    f = Flooder(handshake(a.host, a.port), a.size)
    t0 = time.monotonic()
    timeline = []

    def tick(now):
        timeline.append((now - t0, amqp.rss_mib(a.pid), f.written / 2**20, f.state()))

    f.run(a.duration, tick)
    refused = f.refused_writes
    blocked = [e for e in f.events if e[1] == "blocked"]
    unblocks = sum(1 for e in f.events if e[1] == "unblocked")
    peak = max(max(r for _, r, _, _ in timeline), amqp.hwm_mib(a.pid))
    print("t s | broker RSS MiB | MiB written | state", flush=True)
    last = -10.0
    for t, rss, mib, state in timeline:
        if t < 3 or t - last >= 5:
            print(f"{t:5.1f} | {rss:8.0f} | {mib:8.0f} | {state}", flush=True)
            last = t
    after = None
    if f.state() == "blocked":
        at, _, before = f.events[-1]
        after = f.written - before
        print(
            f"first blocked after {blocked[0][0] - t0:.1f} s and {blocked[0][2] / 2**20:.0f} MiB ({len(blocked)} times blocked, "
            f"{unblocks} unblocked in between); blocked for good after {at - t0:.1f} s and {before / 2**20:.0f} MiB, "
            f"kept writing for {t0 + a.duration - at:.0f} s: the socket took {after / 2**20:.1f} MiB more, "
            f"then refused {refused} writes",
            flush=True,
        )
    else:
        print(f"not blocked at the end ({f.state()}): wrote {f.written / 2**20:.0f} MiB", flush=True)
    other_ok = asyncio.run(fresh_connection_works(a.host, a.port))
    print(f"a fresh connection while the flooder is blocked: {'ok' if other_ok else 'FAILED'}; peak RSS {peak:.0f} MiB "
          f"(VmHWM {amqp.hwm_mib(a.pid):.0f})", flush=True)

    # Purge the backlog: memory falls back, the alarm clears, the flooder is unblocked.
    purged = purge(a.host, a.port)
    t1 = time.monotonic()
    events_before = len(f.events)
    f.run(20, tick)
    unblocked = [e for e in f.events[events_before:] if e[1] == "unblocked"]
    rss_after = amqp.rss_mib(a.pid)
    if unblocked:
        print(f"purged {purged}: unblocked after {unblocked[0][0] - t1:.1f} s (RSS {rss_after:.0f} MiB)", flush=True)
    else:
        print(f"purged {purged}: not unblocked within 20 s (RSS {rss_after:.0f} MiB)", flush=True)
    f.sock.close()

    ok = bool(blocked) and other_ok and after is not None and after < 64 * 2**20
    amqp.result(
        "ignore_blocked",
        seconds=f"{a.duration:.0f}",
        blocked_after_mib=f"{blocked[0][2] / 2**20:.0f}" if blocked else "never",
        times_blocked=len(blocked),
        taken_after_blocked_mib=f"{after / 2**20:.1f}" if after is not None else "-",
        refused_writes=refused,
        peak_rss_mib=f"{peak:.0f}",
        fresh="ok" if other_ok else "FAILED",
        unblocked_after_purge="yes" if unblocked else "no",
        verdict="PASS" if ok else "FAIL",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
