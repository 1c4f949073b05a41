"""What a queue of small messages costs when they arrived interleaved with messages that left.

One publisher writes 16-octet transient messages: one in every --every to a queue nobody
consumes ("keep"), the rest to a queue whose no-ack consumer takes them at once ("drain"). A
body that is a slice of the connection's read buffer keeps that whole buffer alive; kept
messages spread thinly over many buffers would then hold far more memory than the transient
budget counts for them (body + per-message overhead).

Reported: the broker's RSS growth per kept message, beside what the budget counts for one
(the body and `MESSAGE_OVERHEAD`, 536 octets on x86-64: src/broker/memory.rs). Passes when
the growth is at most twice that (the queue's ring buffer grows by doubling), every kept message
is in its queue and every other one was delivered.

usage: pinned_buffers.py HOST PORT BROKER_PID [--kept N] [--every K]
"""

import argparse
import asyncio
import sys
import time

import amqp

KEEP, DRAIN = "pressure-pinned-keep", "pressure-pinned-drain"
BODY = b"x" * 16
BUDGET_PER_KEPT = len(BODY) + 536


async def consumer(host, port, stop, counts):
    c = await amqp.AsyncConn.open(host, port)
    c.writer.write(amqp.channel_open(1) + amqp.basic_consume(1, DRAIN, tag="drain", no_ack=True))
    await c.expect(1, amqp.CHANNEL_OPEN_OK)
    await c.expect(1, amqp.BASIC_CONSUME_OK)
    while not stop.is_set():
        try:
            data = await asyncio.wait_for(c.reader.read(1 << 20), 0.2)
        except asyncio.TimeoutError:
            continue
        if not data:
            raise ConnectionError("consumer closed by the broker")
        counts["bytes"] += len(data)
        counts["at"] = time.monotonic()


async def depth(c, queue):
    c.writer.write(amqp.queue_declare(1, queue, passive=True))
    ok = await c.expect(1, amqp.QUEUE_DECLARE_OK)
    n = ok[4]
    return int.from_bytes(ok[5 + n : 9 + n], "big")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int)
    ap.add_argument("--kept", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=100)
    a = ap.parse_args()

    p = await amqp.AsyncConn.open(a.host, a.port)
    p.writer.write(amqp.channel_open(1) + amqp.queue_declare(1, KEEP) + amqp.queue_declare(1, DRAIN))
    await p.expect(1, amqp.CHANNEL_OPEN_OK)
    await p.expect(1, amqp.QUEUE_DECLARE_OK)
    await p.expect(1, amqp.QUEUE_DECLARE_OK)
    stop, counts = asyncio.Event(), {"bytes": 0, "at": time.monotonic()}
    task = asyncio.create_task(consumer(a.host, a.port, stop, counts))
    await asyncio.sleep(0.5)
    base = amqp.rss_mib(a.pid)

    one_round = amqp.publish(1, "", KEEP, BODY) + amqp.publish(1, "", DRAIN, BODY) * (a.every - 1)
    rounds_per_write = max(1, 64 * 1024 // len(one_round))
    batch = one_round * rounds_per_write
    t0 = time.monotonic()
    for _ in range((a.kept + rounds_per_write - 1) // rounds_per_write):
        p.writer.write(batch)
        await p.writer.drain()
    published = time.monotonic() - t0
    # The consumer has taken everything once it has read nothing for a second.
    while time.monotonic() - counts["at"] < 1.0:
        await asyncio.sleep(0.2)
    kept, left = await depth(p, KEEP), await depth(p, DRAIN)
    rss, peak = amqp.rss_mib(a.pid), amqp.hwm_mib(a.pid)
    stop.set()
    await task
    per_kept = (rss - base) * 1024 * 1024 / max(kept, 1)
    sent = rounds_per_write * ((a.kept + rounds_per_write - 1) // rounds_per_write)
    ok = kept == sent and left == 0 and per_kept <= 2 * BUDGET_PER_KEPT
    print(f"published {sent * a.every} messages in {published:.1f} s; kept {kept} of {sent}, drain queue left {left}")
    print(f"broker RSS {base:.1f} MiB before, {rss:.1f} MiB after (peak {peak:.1f}): {per_kept:.0f} B per kept message, "
          f"the budget counts {BUDGET_PER_KEPT}")
    amqp.result("pinned-buffers", kept=kept, every=a.every, rss_before_mib=f"{base:.1f}", rss_after_mib=f"{rss:.1f}",
                bytes_per_kept=f"{per_kept:.0f}", budget_per_kept=BUDGET_PER_KEPT, verdict="PASS" if ok else "FAIL")
    await p.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
