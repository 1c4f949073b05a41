#!/usr/bin/env python3
"""Static checks of the Grafana side of the dev stack (no Grafana image can be had here):
the provisioning files parse and say what Grafana needs, and every committed dashboard is JSON
that Grafana's file provisioning accepts (title, uid, panels each with a type, and queries that
use the provisioned Prometheus datasource).

usage: check_grafana.py REPO_ROOT [--require-warren-dashboard]
Prints one line per problem and exits 1 if there is any.
"""

import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(sys.argv[1])
require_warren = "--require-warren-dashboard" in sys.argv
grafana = root / "monitoring" / "grafana"
problems = []


def problem(text):
    problems.append(text)
    print(f"PROBLEM: {text}")


def load_yaml(path):
    try:
        return yaml.safe_load(path.read_text())
    except Exception as e:  # noqa: BLE001 - any parse error is the finding
        problem(f"{path}: not YAML: {e}")
        return None


# Datasources: one default Prometheus at the compose service's address, uid "prometheus".
ds_files = sorted((grafana / "provisioning" / "datasources").glob("*.y*ml"))
if not ds_files:
    problem("no datasource provisioning file")
uids = set()
for path in ds_files:
    doc = load_yaml(path) or {}
    if doc.get("apiVersion") != 1:
        problem(f"{path}: apiVersion must be 1")
    for ds in doc.get("datasources") or []:
        for key in ("name", "type", "url", "access"):
            if key not in ds:
                problem(f"{path}: datasource without {key}")
        if ds.get("type") == "prometheus":
            uids.add(ds.get("uid"))
            if ds.get("url") != "http://prometheus:9090":
                problem(f"{path}: the Prometheus datasource should point at http://prometheus:9090")
            if not ds.get("isDefault"):
                problem(f"{path}: the Prometheus datasource should be the default")
if "prometheus" not in uids:
    problem("no Prometheus datasource with uid 'prometheus'")

# Dashboard providers: a file provider whose path the compose file mounts the dashboards under.
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
grafana_mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]]
prov_files = sorted((grafana / "provisioning" / "dashboards").glob("*.y*ml"))
if not prov_files:
    problem("no dashboard provisioning file")
for path in prov_files:
    doc = load_yaml(path) or {}
    if doc.get("apiVersion") != 1:
        problem(f"{path}: apiVersion must be 1")
    for p in doc.get("providers") or []:
        if p.get("type") != "file":
            problem(f"{path}: provider {p.get('name')} is not of type file")
        where = (p.get("options") or {}).get("path", "")
        if not any(m == where or m.startswith(where.rstrip("/") + "/") for m in grafana_mounts):
            problem(f"{path}: provider path {where} is not mounted into the grafana service")
for needed in ("/etc/grafana/provisioning", "/etc/grafana/dashboards/warren", "/etc/grafana/dashboards/rabbitmq"):
    if needed not in grafana_mounts:
        problem(f"docker-compose.yml: grafana does not mount {needed}")

# Dashboards committed in the repository (Warren's own; the RabbitMQ one is downloaded).
dashboards = sorted((grafana / "dashboards").glob("*.json")) if (grafana / "dashboards").is_dir() else []
if not any(d.name == "warren.json" for d in dashboards):
    text = "monitoring/grafana/dashboards/warren.json is missing (Warren's dashboard, from the metrics work)"
    if require_warren:
        problem(text)
    else:
        print(f"NOTE: {text}")


def panels_of(doc):
    for panel in doc.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []  # collapsed rows hold their panels


for path in dashboards:
    try:
        doc = json.loads(path.read_text())
    except ValueError as e:
        problem(f"{path}: not JSON: {e}")
        continue
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in doc:
            problem(f"{path}: no '{key}'")
    # ${NAME} in a datasource reference must be a datasource variable of the dashboard: file
    # provisioning ignores an export's __inputs and fills in nothing else.
    variables = {v.get("name"): v.get("type") for v in (doc.get("templating") or {}).get("list") or []}
    for name in sorted(set(re.findall(r"\$\{(DS_[A-Za-z0-9_]+)\}", path.read_text()))):
        if variables.get(name) != "datasource":
            problem(f"{path}: ${{{name}}} is not a datasource variable of the dashboard (provisioning does not fill in __inputs)")
    ids = set()
    exprs = 0
    for panel in panels_of(doc):
        if "type" not in panel:
            problem(f"{path}: panel {panel.get('title')!r} has no type")
        if panel.get("id") in ids:
            problem(f"{path}: panel id {panel.get('id')} used twice")
        ids.add(panel.get("id"))
        ds = panel.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") not in uids | {None}:
            if not str(ds.get("uid")).startswith("$"):
                problem(f"{path}: panel {panel.get('title')!r} names datasource uid {ds.get('uid')!r}")
        for target in panel.get("targets") or []:
            if target.get("expr"):
                exprs += 1
    if exprs == 0:
        problem(f"{path}: no panel queries Prometheus")
    print(f"ok: {path.relative_to(root)}: {len(ids)} panels, {exprs} queries")

print(f"grafana provisioning: {len(ds_files)} datasource file(s), {len(prov_files)} provider file(s), "
      f"{len(dashboards)} dashboard(s), {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
