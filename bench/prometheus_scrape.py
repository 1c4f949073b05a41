#!/usr/bin/env python3
"""Time Prometheus scrapes with N queues, against Warren or RabbitMQ (rabbitmq_prometheus).

usage: bench/prometheus_scrape.py AMQP_URL PROM_URL [N] [ROUNDS]
  e.g. bench/prometheus_scrape.py amqp://guest:guest@127.0.0.1:5672/%2F http://127.0.0.1:15692 10000 10

Declares N transient queues named prom-bench-<i> over AMQP (pika) with one message each, waits
until /metrics/per-object shows them all (RabbitMQ's figures lag by its 5 s statistics interval),
times ROUNDS scrapes of /metrics and /metrics/per-object (median, min, max, bytes), prints the
broker's RSS if it is a local process given as PID (env BROKER_PID), then deletes the queues.
Needs pika and requests (interop-tests/.venv).
"""
import os
import statistics
import sys
import time

import pika
import requests

amqp, prom = sys.argv[1], sys.argv[2].rstrip("/")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10

conn = pika.BlockingConnection(pika.URLParameters(amqp))
ch = conn.channel()
for i in range(n):
    ch.queue_declare(f"prom-bench-{i}")
    ch.basic_publish("", f"prom-bench-{i}", b"x")
deadline = time.time() + 180
while time.time() < deadline:
    text = requests.get(f"{prom}/metrics/per-object", timeout=300).text
    shown = sum(1 for line in text.splitlines()
                if line.startswith("rabbitmq_queue_messages_ready{") and 'queue="prom-bench-' in line
                and line.endswith(" 1"))
    if shown >= n:
        break
    time.sleep(1)
else:
    print(f"warning: only {shown} of {n} queues shown with their message", file=sys.stderr)


def timed(path):
    t = time.perf_counter()
    r = requests.get(f"{prom}{path}", timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t, len(r.content)


def rss():
    pid = os.environ.get("BROKER_PID")
    if not pid:
        return ""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return f", broker RSS {kb / 1024:.0f} MiB"


for path in ("/metrics", "/metrics/per-object"):
    runs = [timed(path) for _ in range(rounds)]
    secs = [s for s, _ in runs]
    print(f"GET {path}: median {statistics.median(secs) * 1000:.1f} ms "
          f"(min {min(secs) * 1000:.1f}, max {max(secs) * 1000:.1f}), {runs[-1][1] / 1e6:.2f} MB{rss()}")
for i in range(n):
    ch.queue_delete(f"prom-bench-{i}")
conn.close()
