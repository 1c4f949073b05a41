"""Publisher-confirm latency, one message at a time: pika publishes a persistent message to a
durable queue and waits for its confirm before the next. With the slow-disk shim every confirm
must take at least the sync delay (it may only be sent once the message's sync returned).

usage: confirm_latency.py AMQP_URL [--messages N] [--size B]   (prints one JSON line)
"""

import argparse
import json
import time

import pika


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--size", type=int, default=1024)
    a = ap.parse_args()
    conn = pika.BlockingConnection(pika.URLParameters(a.url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("pressure-slow-disk", durable=True)
    props = pika.BasicProperties(delivery_mode=2)
    body = bytes(a.size)
    latencies = []
    for _ in range(a.messages):
        t = time.perf_counter()
        ch.basic_publish("", "pressure-slow-disk", body, props)  # returns once confirmed (raises if nacked)
        latencies.append((time.perf_counter() - t) * 1000)
    conn.close()
    s = sorted(latencies)
    print(json.dumps({"min_ms": s[0], "p50_ms": s[len(s) // 2], "p99_ms": s[int(len(s) * 0.99)], "max_ms": s[-1]}))


if __name__ == "__main__":
    main()
