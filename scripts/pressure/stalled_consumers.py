"""1,000 consumers that stop reading, beside one that keeps up.

--consumers connections each consume from one queue with no-ack (the broker forgets a message
once it is written to that connection) and then never read their socket again. `warren perf`
then publishes into the same queue for --duration seconds with one healthy consumer of its own.
Round robin hands messages to the stalled consumers until each one's socket and outbound buffer
are full (the --fill run); from then on the broker must skip them (back-pressure), keep its
memory bounded by the outbound limits, and serve the healthy consumer (the --duration run, after
the fill's leftovers are purged from the queue).

Reported: the broker's RSS over time and at its peak, the healthy consumer's share and latency,
and whether every stalled connection is still open at the end.

usage: stalled_consumers.py HOST PORT BROKER_PID WARREN_BIN [--consumers N] [--fill S] [--duration S] [--size B]
"""

import argparse
import asyncio
import json
import struct
import sys
import time

import amqp

QUEUE = "pressure-stalled"
OUTBOUND_HIGH_WATER_MIB = 1.0  # src/server/outbound.rs HIGH_WATER
# What else may hold message bodies: the queue's transient budget (transient_memory_limit, default
# 256 MiB) and RocksDB's memtables (32 MiB, src/store/mod.rs).
OTHER_BUFFERS_MIB = 256 + 32


async def stalled_consumer(host, port, i):
    c = await amqp.AsyncConn.open(host, port)
    c.writer.write(
        amqp.channel_open(1)
        + amqp.queue_declare(1, QUEUE)
        + amqp.basic_consume(1, QUEUE, tag=f"stalled-{i}", no_ack=True)
    )
    await c.expect(1, amqp.CHANNEL_OPEN_OK)
    await c.expect(1, amqp.QUEUE_DECLARE_OK)
    await c.expect(1, amqp.BASIC_CONSUME_OK)
    # From here on nothing is read from this socket: the kernel's receive buffer fills, then the
    # broker's send buffer, then its outbound buffer for this connection.
    c.writer.transport.pause_reading()
    return c


async def sample_rss(pid, samples, stop):
    t0 = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - t0, amqp.rss_mib(pid)))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


def socket_queues(port):
    """Bytes waiting in the kernel on the broker's side (send queues) of its connections."""
    send_q = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port:
                send_q += int(fields[4].split(":")[0], 16)
    return send_q


async def perf(a, seconds):
    """One `warren perf` run on the queue: 1 producer, 1 healthy no-ack consumer; its JSON."""
    uri = f"amqp://guest:guest@{a.host}:{a.port}/%2F"
    p = await asyncio.create_subprocess_exec(
        a.warren, "perf", "--uri", uri, "--queue", QUEUE, "--exchange", "", "--keep-queues",
        "--producers", "1", "--consumers", "1", "--auto-ack", "--size", str(a.size),
        "--duration", str(seconds), "--broker-pid", str(a.pid), "--json", "--quiet",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await p.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


def tcp_memory_mib():
    """The kernel's TCP buffer memory now, and where its memory pressure starts (tcp_mem[1])."""
    page = 4096 / 2**20
    with open("/proc/net/sockstat") as f:
        used = next(int(line.split()[-1]) for line in f if line.startswith("TCP:"))
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        pressure = int(f.read().split()[1])
    return used * page, pressure * page


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("warren")
    ap.add_argument("--consumers", type=int, default=1000)
    ap.add_argument("--fill", type=int, default=30)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()

    rss0 = amqp.rss_mib(a.pid)
    t0 = time.monotonic()
    stalled = await asyncio.gather(*(stalled_consumer(a.host, a.port, i) for i in range(a.consumers)))
    rss_idle = amqp.rss_mib(a.pid)
    print(
        f"{len(stalled)} stalled consumers on '{QUEUE}' in {time.monotonic() - t0:.1f} s; "
        f"broker RSS {rss0:.0f} MiB before, {rss_idle:.0f} MiB with them",
        flush=True,
    )

    samples, stop = [], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(a.pid, samples, stop))
    # Fill: until every stalled consumer's socket and outbound buffer are full.
    fill = await perf(a, a.fill)
    rss_filled = amqp.rss_mib(a.pid)
    samples_at_fill = len(samples)
    print(
        f"fill ({a.fill} s): sent {fill['sent']} ({fill['sent_rate']:.0f}/s), the healthy consumer got {fill['received']}; "
        f"RSS {amqp.rss_mib(a.pid):.0f} MiB",
        flush=True,
    )
    # What the fill left in the queue would only inflate the next run's latencies.
    admin = await amqp.AsyncConn.open(a.host, a.port)
    admin.writer.write(amqp.channel_open(1) + amqp.queue_purge(1, QUEUE))
    await admin.expect(1, amqp.CHANNEL_OPEN_OK)
    purged = struct.unpack_from(">I", await admin.expect(1, amqp.QUEUE_PURGE_OK), 4)[0]
    await admin.close()
    # Steady state: the stalled consumers take nothing more; the healthy one gets everything.
    report = await perf(a, a.duration)
    kernel_send_q = socket_queues(a.port)
    tcp_mem, tcp_pressure = tcp_memory_mib()
    stop.set()
    await sampler

    # Every stalled connection is still there: the broker closed none of them (a closed socket
    # reads EOF once the buffered deliveries are consumed; only the state is checked here).
    open_stalled = sum(1 for c in stalled if not c.writer.transport.is_closing())
    peak = max(r for _, r in samples)
    timeline = " ".join(f"{t:.0f}s:{r:.0f}" for t, r in samples[:: max(1, len(samples) // 12)])
    # The limits allow: what the idle connections took, one high-water mark plus one message
    # per stalled connection, the transient budget and the memtables.
    outbound = a.consumers * (OUTBOUND_HIGH_WATER_MIB + a.size / 2**20)
    bound = rss_idle + outbound + OTHER_BUFFERS_MIB
    # Bounded, not creeping: during the steady run RSS stays where the fill left it.
    steady_max = max((r for _, r in samples[samples_at_fill:]), default=rss_filled)
    flat = steady_max <= rss_filled * 1.05 + 16
    sent, received = report["sent"], report["received"]
    print(f"broker RSS MiB over time: {timeline}", flush=True)
    print(
        f"peak RSS {peak:.0f} MiB (VmHWM {amqp.hwm_mib(a.pid):.0f}); the limits allow {bound:.0f} MiB: {rss_idle:.0f} with "
        f"the connections idle + {a.consumers} x ({OUTBOUND_HIGH_WATER_MIB:.0f} MiB + one message) + {OTHER_BUFFERS_MIB} "
        f"(transient budget, memtables); {rss_filled:.0f} MiB after the fill, at most {steady_max:.0f} in the steady run; "
        f"{kernel_send_q / 2**20:.0f} MiB more wait in the kernel's send queues (TCP memory {tcp_mem:.0f} MiB, "
        f"under pressure above {tcp_pressure:.0f})",
        flush=True,
    )
    print(
        f"steady ({a.duration} s, after purging {purged}): publisher sent {sent} ({report['sent_rate']:.0f}/s); the healthy consumer received {received} "
        f"({report['received_rate']:.0f}/s, e2e p50 {report['e2e_p50_us'] / 1000:.1f} ms p99 {report['e2e_p99_us'] / 1000:.1f} ms); "
        f"broker CPU {report['broker_cpu_us_per_msg']:.0f} us/msg; {open_stalled}/{len(stalled)} stalled connections open",
        flush=True,
    )
    for c in stalled:
        c.writer.close()
    ok = peak < bound and flat and open_stalled == len(stalled) and received > 0
    amqp.result(
        "stalled_consumers",
        stalled=a.consumers,
        size=a.size,
        fill_sent=fill["sent"],
        fill_healthy_received=fill["received"],
        steady_sent_rate=f"{report['sent_rate']:.0f}",
        steady_healthy_rate=f"{report['received_rate']:.0f}",
        broker_us_per_msg=f"{report['broker_cpu_us_per_msg']:.0f}",
        e2e_p99_ms=f"{report['e2e_p99_us'] / 1000:.1f}",
        rss_idle_mib=f"{rss_idle:.0f}",
        peak_rss_mib=f"{peak:.0f}",
        bound_mib=f"{bound:.0f}",
        flat="yes" if flat else "NO",
        kernel_send_q_mib=f"{kernel_send_q / 2**20:.0f}",
        tcp_mem_mib=f"{tcp_mem:.0f}",
        verdict="PASS" if ok else "FAIL",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
