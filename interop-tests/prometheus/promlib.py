"""What the Prometheus interop tests share: where the broker is, scraping, a small parser of the
text exposition format (promtool judges validity; this only reads names, labels and values)."""

import os
import re
import subprocess
import time

import requests

PROM_URL = os.environ.get("PROM_URL", "http://127.0.0.1:15692").rstrip("/")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# RabbitMQ refreshes its statistics every 5 s; Warren reads them live.
STATS_WAIT = float(os.environ.get("PROM_STATS_WAIT", "30"))

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(path="/metrics"):
    r = requests.get(PROM_URL + path, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers.get("content-type")
    return r.text


def parse(text):
    """[(name, {label: value}, float)] of every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def own_families(text):
    """Only the rabbitmq_* and warren_* families: RabbitMQ's erlang_* / telemetry collectors
    have lint findings of their own that are not what these tests judge."""
    keep = []
    for line in text.splitlines(keepends=True):
        m = re.match(r"# (?:TYPE|HELP) (\S+)", line) or re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m and m.group(1).startswith(("rabbitmq_", "warren_")):
            keep.append(line)
    return "".join(keep)


def promtool(*args, stdin=None):
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def is_warren():
    return any(n == "rabbitmq_build_info" and l.get("product_name") == "Warren" for n, l, _ in parse(scrape()))


def wait_for(what, check, timeout=STATS_WAIT):
    """Polls check() until it returns something truthy; fails with its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)
