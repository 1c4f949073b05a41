#!/usr/bin/env python3
"""The Markdown tables of bench/compare.sh: Warren, LavinMQ and RabbitMQ side by side, from the JSON
lines `warren perf --json` left in the results directory (<scenario>-<label>.json), with the
ratios of the first broker's figures to each other broker's (Warren / LavinMQ, Warren / RabbitMQ).

    python3 bench/compare_table.py [--brokers "warren lavinmq rabbitmq"] RESULTS_DIR SCENARIO...

A broker that could not run a scenario left <scenario>-<label>.na with the reason: its column says
n/a and the reason follows the table. S6, S9 and S10 have rows of their own (several runs each);
the others share one layout.
"""
import argparse
import json
import os
import re

NAMES = {"warren": "Warren", "lavinmq": "LavinMQ", "rabbitmq": "RabbitMQ"}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--brokers", default=" ".join(NAMES), help="the brokers' columns, in this order")
parser.add_argument("results")
parser.add_argument("scenarios", nargs="*")
args = parser.parse_args()
results = args.results
labels = [b for b in NAMES if b in args.brokers.replace(",", " ").split()]


def read(name):
    try:
        with open(os.path.join(results, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def load(s, label):
    try:
        return json.loads(read(f"{s}-{label}.json").splitlines()[-1])
    except (AttributeError, ValueError, IndexError):
        return None


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MiB":  # from KiB
        return f"{v / 1024:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return ""
    r = a / b
    return f"{r:.3f}×" if f"{r:.2f}" == "0.00" else f"{r:.2f}×"


def g(d, key):
    return (d or {}).get(key)


def table(s, runs, rows, skip_empty=False, extra=()):
    """One table: a column per broker (n/a if <s>-<label>.na says why not), the ratios of the first
    broker's figures to the others', then the extra columns (label, heading), without ratios.
    runs: the result names of the scenario, for the brokers' names and versions in the heading.
    rows: (metric, value of a broker label, unit, with ratios)."""
    na = {b: read(f"{s}-{b}.na") for b in labels}

    def heading(b):
        return next((g(load(r, b), "broker") for r in runs if g(load(r, b), "broker")), NAMES[b])

    first, others = labels[0], labels[1:]
    head = ["metric"] + [heading(b) for b in labels] + [f"{NAMES[first]} / {NAMES[b]}" for b in others]
    head += [h for _, h in extra]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for metric, value, unit, with_ratio in rows:
        v = {b: None if na[b] else value(b) for b in labels}
        if skip_empty and not any(v.values()):  # all zero or absent: nothing to compare (e.g. msg/s in S7)
            continue
        cells = ["n/a" if na[b] else fmt(v[b], unit) for b in labels]
        cells += [ratio(v[first], v[b]) if with_ratio and not na[first] else "" for b in others]
        cells += [fmt(value(b), unit) for b, _ in extra]
        print(f"| {metric} | " + " | ".join(cells) + " |")
    notes = [f"{NAMES[b]}: n/a — {na[b]}" for b in labels if na[b]]
    if notes:
        print()
        print("\n".join(notes))


# (metric, json key, unit, with ratios)
rows = [
    ("sent msg/s", "sent_rate", "", True),
    ("received msg/s", "received_rate", "", True),
    ("broker CPU µs/msg", "broker_cpu_us_per_msg", "", True),
    ("broker CPU s", "broker_cpu_s", "", True),
    ("broker peak RSS MiB", "broker_peak_rss_kib", "MiB", True),
    ("e2e latency p50 µs", "e2e_p50_us", "", True),
    ("e2e latency p95 µs", "e2e_p95_us", "", True),
    ("e2e latency p99 µs", "e2e_p99_us", "", True),
    ("e2e latency max µs", "e2e_max_us", "", True),
    ("confirm latency p50 µs", "confirm_p50_us", "", True),
    ("confirm latency p99 µs", "confirm_p99_us", "", True),
    ("idle RSS KiB/connection", "idle_rss_per_connection_kib", "", True),
    ("load generator CPU µs/msg", "loadgen_cpu_us_per_msg", "", True),
    ("other processes' CPU s (noise)", "other_cpu_s", "", False),
    ("errors", "errors", "", False),
]


def generic(s):
    r = {b: load(s, b) for b in labels}
    print()
    print(f"### {s}: " + next((g(r[b], "scenario") for b in labels if g(r[b], "scenario")), "(no result)"))
    print()
    table(s, [s], [(m, lambda b, k=k: g(r[b], k), unit, with_ratio) for m, k, unit, with_ratio in rows],
          skip_empty=True)


def s6():
    p = {b: load("S6-publish", b) for b in labels}
    d = {b: load("S6-drain", b) for b in labels}

    def peak(b):
        return max([x for x in (g(p[b], "broker_peak_rss_kib"), g(d[b], "broker_peak_rss_kib")) if x is not None],
                   default=None)

    def disk_mib(b, i):  # the files' sizes (0) or the blocks allocated (1)
        v = number(((read(f"S6-disk-{b}.txt") or "").split() + [None, None])[i])
        return v / 2**20 if v is not None else None

    def publish_cpu(b):  # per message confirmed: the JSON's µs/msg counts deliveries, none here
        cpu, n = g(p[b], "broker_cpu_s"), g(p[b], "confirmed")
        return cpu * 1e6 / n if cpu is not None and n else None

    def rss_after_restart(b):
        return number(read(f"S6-recovery-{b}.rss_kib"))

    print()
    print("### S6: backlog of 1 KiB persistent messages: publish with no consumer, then drain")
    print()
    table("S6", ["S6-publish", "S6-drain"], [
        ("messages published (confirmed)", lambda b: g(p[b], "confirmed"), "", True),
        ("publish msg/s", lambda b: g(p[b], "sent_rate"), "", True),
        ("confirm latency p50 µs", lambda b: g(p[b], "confirm_p50_us"), "", True),
        ("confirm latency p99 µs", lambda b: g(p[b], "confirm_p99_us"), "", True),
        ("publish: broker peak RSS MiB", lambda b: g(p[b], "broker_peak_rss_kib"), "MiB", True),
        ("data directory after publishing MiB (files' sizes)", lambda b: disk_mib(b, 0), "", True),
        ("data directory after publishing MiB (blocks allocated)", lambda b: disk_mib(b, 1), "", True),
        ("restart: accepting AMQP after s", lambda b: number(read(f"S6-recovery-{b}.secs")), "", True),
        ("restart: RSS then MiB", rss_after_restart, "MiB", True),
        ("messages drained", lambda b: g(d[b], "received"), "", True),
        ("drain msg/s", lambda b: g(d[b], "received_rate"), "", True),
        ("drain: broker peak RSS MiB", lambda b: g(d[b], "broker_peak_rss_kib"), "MiB", True),
        ("peak RSS over both phases MiB", peak, "MiB", True),
        ("broker CPU µs/msg, publish", publish_cpu, "", True),
        ("broker CPU µs/msg, drain", lambda b: g(d[b], "broker_cpu_us_per_msg"), "", True),
        ("errors (publish + drain)", lambda b: (g(p[b], "errors") or 0) + (g(d[b], "errors") or 0), "", True),
    ])
    print()
    restarted = [NAMES[b] for b in labels if read(f"S6-recovery-{b}.secs")]
    if restarted:
        print(f"Restarted between publish and drain (SIGTERM, then a start on the same data directory; the time "
              f"is until an AMQP protocol header is answered): {', '.join(restarted)}.")
    if "rabbitmq" in labels:
        print("RabbitMQ is shared and long-running: not restarted, its drain follows the publish in the same "
              "process; its data directory is its whole mnesia directory.")
    log = read("S6-recovery-warren.log")
    if log:
        print(f"Warren's log after the restart: `{log[-300:]}`")


def s9():
    r = {b: load("S9", b) for b in labels + ["warren-delayed"]}

    def derived(b, key):
        x = r[b]
        if x is None:
            return None
        if key == "broker_cpu_after_publish_s":
            a, c = x.get("broker_cpu_s"), x.get("broker_cpu_publish_s")
            return a - c if a is not None and c is not None else None
        if key.endswith("_ms"):  # lateness in ms from the JSON's µs
            v = x.get(key[:-3] + "_us")
            return v / 1e3 if v is not None else None
        return x.get(key)

    print()
    print("### S9: " + next((g(r[b], "scenario") for b in labels if g(r[b], "scenario")), "(no result)"))
    print()
    rows9 = [
        ("messages published (confirmed)", "confirmed", ""),
        ("messages received", "received", ""),
        ("publishing phase s (to the last confirm)", "publish_seconds", ""),
        ("**published msg/s** (publishing phase)", "publish_rate", ""),
        ("confirm latency p50 µs", "confirm_p50_us", ""),
        ("confirm latency p99 µs", "confirm_p99_us", ""),
        ("run time s (to the last delivery)", "seconds", ""),
        ("received msg/s (whole run)", "received_rate", ""),
        ("**lateness p50 ms**", "lateness_p50_ms", ""),
        ("lateness p95 ms", "lateness_p95_ms", ""),
        ("**lateness p99 ms**", "lateness_p99_ms", ""),
        ("lateness max ms", "lateness_max_ms", ""),
        ("delivered early (count)", "early", ""),
        ("delivered early, by up to ms", "early_max_ms", ""),
        ("**broker CPU µs/msg**", "broker_cpu_us_per_msg", ""),
        ("broker CPU s", "broker_cpu_s", ""),
        ("broker CPU s while publishing", "broker_cpu_publish_s", ""),
        ("broker CPU s after publishing", "broker_cpu_after_publish_s", ""),
        ("**broker CPU % of a core** (whole run)", "broker_cpu_percent", ""),
        ("**broker peak RSS MiB**", "broker_peak_rss_kib", "MiB"),
        ("load generator CPU µs/msg", "loadgen_cpu_us_per_msg", ""),
        ("other processes' CPU s (noise)", "other_cpu_s", ""),
        ("missing", "missing", ""),
        ("errors", "errors", ""),
    ]
    plain = ("errors", "other_cpu_s", "missing", "early", "early_max_ms", "confirmed", "received")
    extra = [("warren-delayed", "Warren, delayed exchange (reference)")] if r["warren-delayed"] else []
    table("S9", ["S9"], [(m, lambda b, k=k: derived(b, k), unit, k not in plain) for m, k, unit in rows9],
          extra=extra)


def s10():
    p = {b: load("S10-publish", b) for b in labels}
    rd = {b: load("S10-read", b) for b in labels}

    def disk(b, i):  # MiB on disk after publishing (0) and after reading (1)
        v = ((read(f"S10-disk-{b}.txt") or "").split() + [None, None])[i]
        return int(v) / 2**20 if v and v.isdigit() else None

    def per(d, cpu_key, n_key, scale=1e6):
        cpu, n = g(d, cpu_key), g(d, n_key)
        return cpu * scale / n if cpu is not None and n else None

    def scenario(runs):
        return next((g(runs[b], "scenario") for b in labels if g(runs[b], "scenario")), "(no result)")

    print()
    print("### S10: a stream of 1 KiB messages published with confirms, then read whole from `first`")
    print()
    print(f"1. publish: {scenario(p)}")
    print(f"2. read: {scenario(rd)}")
    print()
    table("S10", ["S10-publish", "S10-read", "S10-probe"], [
        ("messages published (confirmed)", lambda b: g(p[b], "confirmed"), "", False),
        ("publishing s (to the last confirm)", lambda b: g(p[b], "seconds"), "", True),
        ("**publish msg/s**", lambda b: g(p[b], "sent_rate"), "", True),
        ("confirm latency p50 µs", lambda b: g(p[b], "confirm_p50_us"), "", True),
        ("confirm latency p99 µs", lambda b: g(p[b], "confirm_p99_us"), "", True),
        ("**publish: broker CPU µs/msg**", lambda b: per(p[b], "broker_cpu_s", "confirmed"), "", True),
        ("publish: broker CPU % of a core", lambda b: g(p[b], "broker_cpu_percent"), "", True),
        ("**publish: broker peak RSS MiB**", lambda b: g(p[b], "broker_peak_rss_kib"), "MiB", True),
        ("**stream on disk after publishing MiB**", lambda b: disk(b, 0), "", True),
        ("deliveries (all consumers)", lambda b: g(rd[b], "received"), "", False),
        ("reading s (to the last delivery)", lambda b: g(rd[b], "seconds"), "", True),
        ("**read: deliveries/s (all consumers)**", lambda b: g(rd[b], "received_rate"), "", True),
        ("**read: broker CPU µs/delivery**", lambda b: g(rd[b], "broker_cpu_us_per_msg"), "", True),
        ("read: broker CPU % of a core", lambda b: g(rd[b], "broker_cpu_percent"), "", True),
        ("**read: broker peak RSS MiB**", lambda b: g(rd[b], "broker_peak_rss_kib"), "MiB", True),
        ("stream on disk after reading MiB", lambda b: disk(b, 1), "", True),
        ("load generator CPU µs/msg, publish", lambda b: g(p[b], "loadgen_cpu_us_per_msg"), "", False),
        ("load generator CPU µs/delivery, read", lambda b: g(rd[b], "loadgen_cpu_us_per_msg"), "", False),
        ("other processes' CPU s (noise), publish", lambda b: g(p[b], "other_cpu_s"), "", False),
        ("other processes' CPU s (noise), read", lambda b: g(rd[b], "other_cpu_s"), "", False),
        ("missing deliveries", lambda b: g(rd[b], "missing"), "", False),
        ("errors (publish + read)", lambda b: (g(p[b], "errors") or 0) + (g(rd[b], "errors") or 0), "", False),
    ])


def lavinmq_caveat():
    """LavinMQ before 2.9 confirms without fsync: say so once, above the tables, if it ran a persistent scenario."""
    durable = [s for s in args.scenarios if s in ("S2", "S6", "S9", "S10") and not read(f"{s}-lavinmq.na")]
    if "lavinmq" not in labels or not durable:
        return
    runs = sorted(n[: -len("-lavinmq.json")] for n in os.listdir(results) if n.endswith("-lavinmq.json"))
    name = next((g(load(r, "lavinmq"), "broker") for r in runs if g(load(r, "lavinmq"), "broker")), "LavinMQ")
    version = tuple(int(x) for x in re.findall(r"\d+", name)[:2])
    if version and version >= (2, 9):
        return
    print()
    print(f"Note: {name} confirms publishes without fsync (LavinMQ syncs before confirming from 2.9 on), so its "
          f"figures for persistent messages ({', '.join(durable)}) are an upper bound for a broker that syncs, as "
          "Warren and RabbitMQ do.")


lavinmq_caveat()
for s in args.scenarios:
    {"S6": s6, "S9": s9, "S10": s10}.get(s, lambda: generic(s))()
