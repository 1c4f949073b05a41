"""Example publisher of the Warren dev stack (pika, RabbitMQ's Python client, unchanged).

Declares the retry-with-dead-letter topology (the consumer declares the same; whoever starts
first creates it) and publishes COUNT persistent jobs with publisher confirms, ROUNDS times
(0: forever), INTERVAL seconds apart. Each job says how many times the consumer is to fail it
before it succeeds (`fail_times`); 99 means always, so that job ends in the parking queue.

Environment: AMQP_URL (amqp://guest:guest@warren:5672/%2F), COUNT (20), ROUNDS (1), INTERVAL (5),
RETRY_DELAY_MS (1000).
"""

import json
import os
import sys
import time

import pika

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@warren:5672/%2F")
COUNT = int(os.environ.get("COUNT", "20"))
ROUNDS = int(os.environ.get("ROUNDS", "1"))
INTERVAL = float(os.environ.get("INTERVAL", "5"))
RETRY_DELAY_MS = int(os.environ.get("RETRY_DELAY_MS", "1000"))
# A job fails this many times before it succeeds; 99 = always (parked after MAX_ATTEMPTS).
FAILURE_PLAN = [0, 0, 1, 2, 99]


def declare(ch):
    """work -> (reject) -> work.retry exchange -> work.wait (TTL) -> (expire) -> work."""
    ch.exchange_declare("work.retry", "direct", durable=True)
    ch.queue_declare(
        "work",
        durable=True,
        arguments={"x-dead-letter-exchange": "work.retry", "x-dead-letter-routing-key": "wait"},
    )
    ch.queue_declare(
        "work.wait",
        durable=True,
        arguments={
            "x-message-ttl": RETRY_DELAY_MS,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "work",
        },
    )
    ch.queue_bind("work.wait", "work.retry", "wait")
    ch.queue_declare("work.parking", durable=True)


def connect():
    params = pika.URLParameters(URL)
    for attempt in range(30):
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.AMQPConnectionError as e:
            print(f"producer: broker not reachable yet ({e!r}), retrying", flush=True)
            time.sleep(1 + attempt * 0.2)
    sys.exit("producer: giving up on the broker")


def main():
    conn = connect()
    ch = conn.channel()
    declare(ch)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    n = 0
    rounds = 0
    while ROUNDS == 0 or rounds < ROUNDS:
        for _ in range(COUNT):
            job = {"id": n, "fail_times": FAILURE_PLAN[n % len(FAILURE_PLAN)]}
            # With confirms on, basic_publish returns once the broker has confirmed the message
            # (Warren confirms a persistent message after it is synced to disk).
            ch.basic_publish("", "work", json.dumps(job).encode(), props, mandatory=True)
            n += 1
        rounds += 1
        print(f"producer: round {rounds}: {COUNT} jobs published and confirmed ({n} in all)", flush=True)
        if ROUNDS == 0 or rounds < ROUNDS:
            conn.sleep(INTERVAL)
    conn.close()
    print(f"producer: done, {n} jobs published", flush=True)


if __name__ == "__main__":
    main()
