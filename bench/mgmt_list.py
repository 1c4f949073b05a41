#!/usr/bin/env python3
"""Time `GET /api/queues` with N queues, against any broker with RabbitMQ's management API.

usage: bench/mgmt_list.py AMQP_URL MGMT_URL [N] [ROUNDS]
  e.g. bench/mgmt_list.py amqp://guest:guest@127.0.0.1:5672/%2F http://127.0.0.1:15672 10000 5

Declares N transient queues named mgmt-bench-<i> over AMQP (pika), times ROUNDS full listings
(and one `columns=name,messages` listing, what rabbitmqadmin asks for) and one paged request,
prints the figures, then deletes the queues. Needs pika and requests (interop-tests/.venv).
RabbitMQ's listing reflects its stats database, which lags: wait until it shows all N first.
"""
import statistics
import sys
import time

import pika
import requests

amqp, mgmt = sys.argv[1], sys.argv[2].rstrip("/")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
auth = ("guest", "guest")

conn = pika.BlockingConnection(pika.URLParameters(amqp))
ch = conn.channel()
for i in range(n):
    ch.queue_declare(f"mgmt-bench-{i}")
deadline = time.time() + 120
while time.time() < deadline:
    listed = requests.get(f"{mgmt}/api/queues?columns=name", auth=auth, timeout=300).json()
    if sum(1 for q in listed if q["name"].startswith("mgmt-bench-")) >= n:
        break
    time.sleep(1)


def timed(path):
    t = time.perf_counter()
    r = requests.get(f"{mgmt}{path}", auth=auth, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t, len(r.content)


full = [timed("/api/queues") for _ in range(rounds)]
cols = [timed("/api/queues?columns=name,messages") for _ in range(rounds)]
paged = [timed("/api/queues?page=1&page_size=100") for _ in range(rounds)]
for label, runs in (("GET /api/queues", full), ("GET /api/queues?columns=name,messages", cols),
                    ("GET /api/queues?page=1&page_size=100", paged)):
    secs = [s for s, _ in runs]
    print(f"{label}: median {statistics.median(secs) * 1000:.0f} ms "
          f"(min {min(secs) * 1000:.0f}, max {max(secs) * 1000:.0f}), {runs[0][1] / 1e6:.1f} MB")
for i in range(n):
    ch.queue_delete(f"mgmt-bench-{i}")
conn.close()
