#!/usr/bin/env python3
"""The Markdown tables of bench/compare.sh: Warren and RabbitMQ side by side, from the JSON lines
`warren perf --json` left in the results directory (<scenario>-<label>.json), with ratios.

    python3 bench/compare_table.py RESULTS_DIR SCENARIO...

S6, S9 and S10 have tables of their own (several runs each); the others share one layout.
"""
import json
import os
import sys

results, scenarios = sys.argv[1], sys.argv[2:]

def load(s, label):
    try:
        with open(os.path.join(results, f"{s}-{label}.json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{v / 1024:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"

# (label, json key, unit, higher is better)
rows = [
    ("sent msg/s", "sent_rate", "", True),
    ("received msg/s", "received_rate", "", True),
    ("broker CPU µs/msg", "broker_cpu_us_per_msg", "", False),
    ("broker CPU s", "broker_cpu_s", "", False),
    ("broker peak RSS MiB", "broker_peak_rss_kib", "MiB", False),
    ("e2e latency p50 µs", "e2e_p50_us", "", False),
    ("e2e latency p95 µs", "e2e_p95_us", "", False),
    ("e2e latency p99 µs", "e2e_p99_us", "", False),
    ("e2e latency max µs", "e2e_max_us", "", False),
    ("confirm latency p50 µs", "confirm_p50_us", "", False),
    ("confirm latency p99 µs", "confirm_p99_us", "", False),
    ("idle RSS KiB/connection", "idle_rss_per_connection_kib", "", False),
    ("load generator CPU µs/msg", "loadgen_cpu_us_per_msg", "", False),
    ("other processes' CPU s (noise)", "other_cpu_s", "", False),
    ("errors", "errors", "", False),
]

def s6():
    wp, rp = load("S6-publish", "warren"), load("S6-publish", "rabbitmq")
    wd, rd = load("S6-drain", "warren"), load("S6-drain", "rabbitmq")
    print()
    print("### S6: backlog of 1 KiB persistent messages: publish with no consumer, then drain")
    print()
    print("| metric | Warren | RabbitMQ | Warren / RabbitMQ |")
    print("|---|---:|---:|---:|")
    def row(label, a, b, unit=""):
        ratio = f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""
        print(f"| {label} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio} |")
    g = lambda d, k: (d or {}).get(k)
    row("messages published (confirmed)", g(wp, "confirmed"), g(rp, "confirmed"))
    row("publish msg/s", g(wp, "sent_rate"), g(rp, "sent_rate"))
    row("confirm latency p50 µs", g(wp, "confirm_p50_us"), g(rp, "confirm_p50_us"))
    row("confirm latency p99 µs", g(wp, "confirm_p99_us"), g(rp, "confirm_p99_us"))
    row("publish: broker peak RSS MiB", g(wp, "broker_peak_rss_kib"), g(rp, "broker_peak_rss_kib"), "MiB")
    row("messages drained", g(wd, "received"), g(rd, "received"))
    row("drain msg/s", g(wd, "received_rate"), g(rd, "received_rate"))
    row("drain: broker peak RSS MiB", g(wd, "broker_peak_rss_kib"), g(rd, "broker_peak_rss_kib"), "MiB")
    peaks = lambda *ds: max([x for x in (g(d, "broker_peak_rss_kib") for d in ds) if x is not None], default=None)
    row("peak RSS over both phases MiB", peaks(wp, wd), peaks(rp, rd), "MiB")
    row("broker CPU µs/msg, publish", g(wp, "broker_cpu_us_per_msg"), g(rp, "broker_cpu_us_per_msg"))
    row("broker CPU µs/msg, drain", g(wd, "broker_cpu_us_per_msg"), g(rd, "broker_cpu_us_per_msg"))
    row("errors (publish + drain)", (g(wp, "errors") or 0) + (g(wd, "errors") or 0),
        (g(rp, "errors") or 0) + (g(rd, "errors") or 0))
    try:
        secs = open(os.path.join(results, "S6-recovery-warren.secs")).read().strip()
        rss = int(open(os.path.join(results, "S6-recovery-warren.rss_kib")).read().strip())
        log = open(os.path.join(results, "S6-recovery-warren.log")).read().strip()
        print()
        print(f"Warren restart (SIGTERM, then start on the same data directory): accepting AMQP after "
              f"{secs} s, RSS then {rss / 1024:.1f} MiB; log: `{log[-300:]}`")
    except (OSError, ValueError):
        pass

def s9():
    w, r, d = load("S9", "warren"), load("S9", "rabbitmq"), load("S9", "warren-delayed")
    g = lambda x, k: (x or {}).get(k)
    print()
    print("### S9: " + (g(w, "scenario") or g(r, "scenario") or "(no result)"))
    print()
    head = f"| metric | {g(w, 'broker') or 'Warren'} | {g(r, 'broker') or 'RabbitMQ'} | Warren / RabbitMQ |"
    rule = "|---|---:|---:|---:|"
    if d:
        head += " Warren, delayed exchange (reference) |"
        rule += "---:|"
    print(head)
    print(rule)
    def derived(x, key):
        if x is None:
            return None
        if key == "broker_cpu_after_publish_s":
            a, b = x.get("broker_cpu_s"), x.get("broker_cpu_publish_s")
            return a - b if a is not None and b is not None else None
        if key.endswith("_ms"):  # lateness in ms from the JSON's µs
            v = x.get(key[:-3] + "_us")
            return v / 1e3 if v is not None else None
        return x.get(key)
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
    for label, key, unit in rows9:
        a, b = derived(w, key), derived(r, key)
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
        plain = ("errors", "other_cpu_s", "missing", "early", "early_max_ms", "confirmed", "received")
        ratio = f"{a / b:.2f}×" if numbers and key not in plain else ""
        if ratio == "0.00×":
            ratio = f"{a / b:.3f}×"
        line = f"| {label} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio} |"
        if d:
            line += f" {fmt(derived(d, key), unit)} |"
        print(line)

def s10():
    wp, rp = load("S10-publish", "warren"), load("S10-publish", "rabbitmq")
    wr, rr = load("S10-read", "warren"), load("S10-read", "rabbitmq")
    g = lambda d, k: (d or {}).get(k)

    def disk(label):  # bytes on disk after publishing and after reading
        try:
            with open(os.path.join(results, f"S10-disk-{label}.txt")) as f:
                return [int(x) if x.isdigit() else None for x in f.read().split()] + [None, None]
        except OSError:
            return [None, None]

    def per(d, cpu_key, n_key, scale=1e6):
        cpu, n = g(d, cpu_key), g(d, n_key)
        return cpu * scale / n if cpu is not None and n else None

    def mib(v):
        return v / 2**20 if v is not None else None

    def rss_mib(d):
        kib = g(d, "broker_peak_rss_kib")
        return kib / 1024 if kib is not None else None

    print()
    print("### S10: a stream of 1 KiB messages published with confirms, then read whole from `first`")
    print()
    print(f"1. publish: {g(wp, 'scenario') or g(rp, 'scenario') or '(no result)'}")
    print(f"2. read: {g(wr, 'scenario') or g(rr, 'scenario') or '(no result)'}")
    print()
    print("| metric | Warren | RabbitMQ | Warren / RabbitMQ |")
    print("|---|---:|---:|---:|")
    (wd1, wd2), (rd1, rd2) = disk("warren")[:2], disk("rabbitmq")[:2]
    rows10 = [
        ("messages published (confirmed)", g(wp, "confirmed"), g(rp, "confirmed"), False),
        ("publishing s (to the last confirm)", g(wp, "seconds"), g(rp, "seconds"), True),
        ("**publish msg/s**", g(wp, "sent_rate"), g(rp, "sent_rate"), True),
        ("confirm latency p50 µs", g(wp, "confirm_p50_us"), g(rp, "confirm_p50_us"), True),
        ("confirm latency p99 µs", g(wp, "confirm_p99_us"), g(rp, "confirm_p99_us"), True),
        ("**publish: broker CPU µs/msg**", per(wp, "broker_cpu_s", "confirmed"),
         per(rp, "broker_cpu_s", "confirmed"), True),
        ("publish: broker CPU % of a core", g(wp, "broker_cpu_percent"), g(rp, "broker_cpu_percent"), True),
        ("**publish: broker peak RSS MiB**", rss_mib(wp), rss_mib(rp), True),
        ("**stream on disk after publishing MiB**", mib(wd1), mib(rd1), True),
        ("deliveries (all consumers)", g(wr, "received"), g(rr, "received"), False),
        ("reading s (to the last delivery)", g(wr, "seconds"), g(rr, "seconds"), True),
        ("**read: deliveries/s (all consumers)**", g(wr, "received_rate"), g(rr, "received_rate"), True),
        ("**read: broker CPU µs/delivery**", g(wr, "broker_cpu_us_per_msg"), g(rr, "broker_cpu_us_per_msg"), True),
        ("read: broker CPU % of a core", g(wr, "broker_cpu_percent"), g(rr, "broker_cpu_percent"), True),
        ("**read: broker peak RSS MiB**", rss_mib(wr), rss_mib(rr), True),
        ("stream on disk after reading MiB", mib(wd2), mib(rd2), True),
        ("load generator CPU µs/msg, publish", g(wp, "loadgen_cpu_us_per_msg"), g(rp, "loadgen_cpu_us_per_msg"), False),
        ("load generator CPU µs/delivery, read", g(wr, "loadgen_cpu_us_per_msg"), g(rr, "loadgen_cpu_us_per_msg"),
         False),
        ("other processes' CPU s (noise), publish", g(wp, "other_cpu_s"), g(rp, "other_cpu_s"), False),
        ("other processes' CPU s (noise), read", g(wr, "other_cpu_s"), g(rr, "other_cpu_s"), False),
        ("missing deliveries", g(wr, "missing"), g(rr, "missing"), False),
        ("errors (publish + read)", (g(wp, "errors") or 0) + (g(wr, "errors") or 0),
         (g(rp, "errors") or 0) + (g(rr, "errors") or 0), False),
    ]
    for label, a, b, with_ratio in rows10:
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
        ratio = f"{a / b:.2f}×" if numbers and with_ratio else ""
        print(f"| {label} | {fmt(a, '')} | {fmt(b, '')} | {ratio} |")


for s in scenarios:
    if s == "S6":
        s6()
        continue
    if s == "S9":
        s9()
        continue
    if s == "S10":
        s10()
        continue
    w, r = load(s, "warren"), load(s, "rabbitmq")
    print()
    print(f"### {s}: " + (w or r or {}).get("scenario", "(no result)"))
    print()
    wb = (w or {}).get("broker", "Warren") or "Warren"
    rb = (r or {}).get("broker", "RabbitMQ") or "RabbitMQ"
    print(f"| metric | {wb} | {rb} | Warren / RabbitMQ |")
    print("|---|---:|---:|---:|")
    for label, key, unit, _ in rows:
        a, b = (w or {}).get(key), (r or {}).get(key)
        if a is None and b is None:
            continue
        if not a and not b:  # both zero or absent: nothing to compare (e.g. msg/s in S7)
            continue
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
        ratio = f"{a / b:.2f}×" if numbers and key not in ("errors", "other_cpu_s") else ""
        print(f"| {label} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio} |")
