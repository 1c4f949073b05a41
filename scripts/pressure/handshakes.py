"""10,000 concurrent connections: every one does the whole AMQP handshake at the same moment and
stays open; then a fresh connection must still work, and after all close, the broker's open
file descriptors must come back to where they started (no fd leak).

usage: handshakes.py HOST PORT BROKER_PID [--connections N] [--timeout S]
"""

import argparse
import asyncio
import statistics
import sys
import time

import amqp


async def one(host, port, timeout, latencies, failures):
    t0 = time.monotonic()
    try:
        c = await asyncio.wait_for(amqp.AsyncConn.open(host, port), timeout)
    except Exception as e:  # noqa: BLE001 - every failure is counted by its kind
        failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
        return None
    latencies.append(time.monotonic() - t0)
    return c


async def round_trip(host, port):
    """A fresh connection: channel, queue, publish, get; True if the message came back."""
    c = await amqp.AsyncConn.open(host, port)
    c.writer.write(amqp.channel_open(1) + amqp.queue_declare(1, "pressure-fresh", auto_delete=False))
    await c.expect(1, amqp.CHANNEL_OPEN_OK)
    await c.expect(1, amqp.QUEUE_DECLARE_OK)
    c.writer.write(amqp.publish(1, "", "pressure-fresh", b"still serving") + amqp.basic_get(1, "pressure-fresh"))
    while True:
        kind, _, payload = await c.next_frame()
        if kind == amqp.FRAME_METHOD and amqp.method_id(payload) == amqp.BASIC_GET_EMPTY:
            # The publish may not have reached the queue before the get: ask again.
            c.writer.write(amqp.basic_get(1, "pressure-fresh"))
        if kind == amqp.FRAME_BODY:
            ok = payload == b"still serving"
            break
    await c.close()
    return ok


def pct(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()

    fds0, rss0 = amqp.open_fds(a.pid), amqp.rss_mib(a.pid)
    cpu = amqp.CpuMeter(a.pid)
    latencies, failures = [], {}
    t0 = time.monotonic()
    conns = await asyncio.gather(*(one(a.host, a.port, a.timeout, latencies, failures) for _ in range(a.connections)))
    wall = time.monotonic() - t0
    cpu_s = cpu.seconds()
    conns = [c for c in conns if c is not None]
    rss1, fds1 = amqp.rss_mib(a.pid), amqp.open_fds(a.pid)
    print(
        f"{len(conns)}/{a.connections} handshakes in {wall:.1f} s ({len(conns) / wall:.0f}/s); "
        f"latency p50 {statistics.median(latencies) * 1000:.0f} ms p99 {pct(latencies, 0.99) * 1000:.0f} ms "
        f"max {max(latencies) * 1000:.0f} ms; failures {failures or 'none'}",
        flush=True,
    )
    print(
        f"broker: {cpu_s:.2f} s CPU ({cpu_s / max(len(conns), 1) * 1e6:.0f} us per handshake); "
        f"RSS {rss0:.0f} -> {rss1:.0f} MiB ({(rss1 - rss0) * 1024 / max(len(conns), 1):.1f} KiB per connection); "
        f"fds {fds0} -> {fds1}",
        flush=True,
    )

    # With every connection held open, a new one still works end to end.
    fresh_ok = await asyncio.wait_for(round_trip(a.host, a.port), 30)
    print(f"fresh connection with {len(conns)} open: {'ok' if fresh_ok else 'FAILED'}", flush=True)

    # Idle for a while: the held connections cost the broker no CPU (heartbeats are off).
    idle = amqp.CpuMeter(a.pid)
    await asyncio.sleep(5)
    idle_cpu = idle.fraction()

    t1 = time.monotonic()
    closes = await asyncio.gather(*(c.close(timeout=30) for c in conns), return_exceptions=True)
    close_failures = sum(1 for r in closes if isinstance(r, BaseException))
    close_wall = time.monotonic() - t1
    # The broker's fds return to where they were once every connection task has ended.
    deadline = time.monotonic() + 15
    while amqp.open_fds(a.pid) > fds0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    fds2 = amqp.open_fds(a.pid)
    print(
        f"closed {len(conns) - close_failures} in {close_wall:.1f} s ({close_failures} close failures); "
        f"broker fds back to {fds2} (baseline {fds0}); idle CPU with all open {idle_cpu * 100:.1f}%",
        flush=True,
    )
    ok = len(conns) == a.connections and fresh_ok and fds2 <= fds0 and close_failures == 0
    amqp.result(
        "handshakes",
        connections=a.connections,
        ok=len(conns),
        wall_s=f"{wall:.1f}",
        p99_ms=f"{pct(latencies, 0.99) * 1000:.0f}",
        cpu_us_per_handshake=f"{cpu_s / max(len(conns), 1) * 1e6:.0f}",
        rss_mib=f"{rss1:.0f}",
        kib_per_conn=f"{(rss1 - rss0) * 1024 / max(len(conns), 1):.1f}",
        fresh="ok" if fresh_ok else "FAILED",
        fd_leak=max(0, fds2 - fds0),
        verdict="PASS" if ok else "FAIL",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
