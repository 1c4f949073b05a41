"""More connections than the broker's file-descriptor limit (run it under a low `ulimit -n`).

1. Opens --connections at once (each with a handshake deadline): the broker accepts what its
   descriptors allow; the rest wait in the listen backlog, and are kept there (their sockets stay
   open) so the broker stays at its limit with connections pending.
2. For --hold seconds at the limit: the broker's CPU (a busy accept loop would burn a core) and the
   log lines it writes about failed accepts (they should not come one per attempt).
3. Existing connections keep working: some of them publish persistent messages with confirms to
   a durable queue and get them back.
4. The waiting clients give up (close), 100 established connections close: a fresh connection
   must then be served.
5. Everything closes: the broker's descriptors come back to where they started.

usage: fd_limit.py HOST PORT BROKER_PID BROKER_LOG [--connections N] [--hold S]
"""

import argparse
import asyncio
import sys
import time

import amqp


async def attempt(host, port, deadline, pending):
    """A connection with a handshake deadline; on timeout the socket is kept (still waiting).
    A connect that does not complete in time (the backlog is full too: SYNs are dropped and
    retried for minutes) counts as refused."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), deadline)
    c = amqp.AsyncConn(reader, writer)
    try:
        writer.write(amqp.PROTOCOL_HEADER)
        await asyncio.wait_for(c.expect(0, amqp.CONNECTION_START), deadline)
        writer.write(amqp.start_ok())
        await c.expect(0, amqp.CONNECTION_TUNE)
        writer.write(amqp.tune_ok() + amqp.connection_open("/"))
        await c.expect(0, amqp.CONNECTION_OPEN_OK)
        return c
    except asyncio.TimeoutError:
        pending.append(writer)
        return None


async def confirmed_round_trip(c, ch, queue):
    """On an established connection: a new channel publishes one persistent message with a
    confirm to a durable queue, then gets it back. True if both worked."""
    c.writer.write(amqp.channel_open(ch) + amqp.confirm_select(ch) + amqp.queue_declare(ch, queue, durable=True))
    await c.expect(ch, amqp.CHANNEL_OPEN_OK)
    await c.expect(ch, amqp.CONFIRM_SELECT_OK)
    await c.expect(ch, amqp.QUEUE_DECLARE_OK)
    c.writer.write(amqp.publish(ch, "", queue, b"at the fd limit", persistent=True))
    await c.expect(ch, amqp.BASIC_ACK)
    c.writer.write(amqp.basic_get(ch, queue))
    await c.expect(ch, amqp.BASIC_GET_OK)
    while True:
        kind, _, payload = await c.next_frame()
        if kind == amqp.FRAME_BODY:
            return payload == b"at the fd limit"


def accept_log_lines(path):
    with open(path, errors="replace") as f:
        return sum(1 for line in f if "accept" in line)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("log")
    ap.add_argument("--connections", type=int, default=1500)
    ap.add_argument("--hold", type=float, default=20.0)
    a = ap.parse_args()
    with open(f"/proc/{a.pid}/limits") as f:
        limit = next(line.split()[3] for line in f if line.startswith("Max open files"))
    fds0 = amqp.open_fds(a.pid)
    print(f"broker fd limit {limit}, {fds0} open before", flush=True)

    # 1. More connections than the broker has descriptors for.
    pending = []
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(attempt(a.host, a.port, 8.0, pending) for _ in range(a.connections)), return_exceptions=True
    )
    conns = [r for r in results if isinstance(r, amqp.AsyncConn)]
    errors = [r for r in results if isinstance(r, BaseException)]
    opened = len(conns)
    fds1 = amqp.open_fds(a.pid)
    print(
        f"{len(conns)} connections open, {len(pending)} waiting unanswered, {len(errors)} refused/failed "
        f"({sorted({type(e).__name__ for e in errors})}) after {time.monotonic() - t0:.1f} s; broker fds {fds1}",
        flush=True,
    )

    # 2. At the limit, with connections pending in the backlog: CPU and log lines.
    lines0 = accept_log_lines(a.log)
    cpu = amqp.CpuMeter(a.pid)
    await asyncio.sleep(a.hold)
    at_limit_cpu = cpu.fraction()
    log_lines = accept_log_lines(a.log) - lines0
    total_log_lines = accept_log_lines(a.log)
    print(
        f"{a.hold:.0f} s at the limit: broker CPU {at_limit_cpu * 100:.1f}% of a core; "
        f"{log_lines} log lines about accept in that time ({total_log_lines} in all)",
        flush=True,
    )

    # 3. Existing connections keep working (persistent + confirm: the store works at the limit).
    checks = await asyncio.gather(
        *(asyncio.wait_for(confirmed_round_trip(c, 1, f"pressure-fd-{i}"), 15) for i, c in enumerate(conns[:10])),
        return_exceptions=True,
    )
    existing_ok = sum(1 for r in checks if r is True)
    print(f"existing connections: {existing_ok}/{len(checks)} published with a confirm and got it back", flush=True)
    if existing_ok < len(checks):
        print(f"  failures: {[repr(r) for r in checks if r is not True][:3]}", flush=True)

    # 4. The waiting clients give up, 100 established ones close: a fresh one gets in.
    for w in pending:
        w.close()
    for c in conns[-100:]:
        await c.close()
    conns = conns[:-100]
    t1 = time.monotonic()
    fresh = None
    while fresh is None and time.monotonic() - t1 < 30:
        try:
            fresh = await asyncio.wait_for(amqp.AsyncConn.open(a.host, a.port), 5)
        except (asyncio.TimeoutError, OSError, amqp.ProtocolError):
            await asyncio.sleep(0.5)
    fresh_s = time.monotonic() - t1
    fresh_ok = fresh is not None and await confirmed_round_trip(fresh, 1, "pressure-fd-fresh")
    print(f"fresh connection after 100 closed: {'ok' if fresh_ok else 'FAILED'} in {fresh_s:.1f} s", flush=True)
    if fresh is not None:
        conns.append(fresh)

    # 5. All close; descriptors come back.
    await asyncio.gather(*(c.close(timeout=15) for c in conns), return_exceptions=True)
    deadline = time.monotonic() + 15
    while amqp.open_fds(a.pid) > fds0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    fds2 = amqp.open_fds(a.pid)
    print(f"all closed: broker fds {fds2} (baseline {fds0})", flush=True)

    ok = existing_ok == len(checks) and fresh_ok and fds2 <= fds0 and at_limit_cpu < 0.05 and log_lines <= 2
    amqp.result(
        "fd_limit",
        fd_limit=limit,
        attempted=a.connections,
        served=opened,
        waiting=len(pending),
        cpu_at_limit_pct=f"{at_limit_cpu * 100:.1f}",
        accept_log_lines=log_lines,
        existing="ok" if existing_ok == len(checks) else "FAILED",
        fresh="ok" if fresh_ok else "FAILED",
        fresh_after_s=f"{fresh_s:.1f}",
        fd_leak=max(0, fds2 - fds0),
        verdict="PASS" if ok else "FAIL",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
