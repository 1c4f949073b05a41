#!/usr/bin/env bash
# The container image and the docker-compose dev stack, run for real (issue 15). scripts/test.sh
# runs it with the binary its cargo build made; by hand:
#
#   WARREN_BIN=~/.cache/warren-target/debug/warren interop-tests/docker/run.sh
#
# No image can be pulled on the machines this runs on, so everything is built locally:
#   - debian:bookworm-slim from debootstrap + `docker import` (once; kept between runs),
#   - Warren's image from the Dockerfile's `prebuilt` target with WARREN_BIN (stripped),
#   - stand-ins for node:20-bookworm-slim (the host's Node and npm) and prom/prometheus (Debian's
#     prometheus package), passed to the compose file through NODE_IMAGE and PROMETHEUS_IMAGE,
#   - the two example services with the compose file's own build sections.
# Then: `compose config` validates docker-compose.yml; promtool checks monitoring/prometheus.yml
# and the alert rules it loads; check_grafana.py checks Grafana's provisioning and dashboards
# statically (no Grafana image here); the stack's warren, producer, consumer and prometheus
# services run on free loopback ports, with a default user other than guest, and the test checks
# that Warren turns healthy, the examples finish their retry-with-dead-letter run, the management
# API answers through its published port, a persistent message survives
# `compose restart warren`, a definitions file mounted at /etc/warren/definitions.json is loaded,
# and /metrics answers on the published metrics port and Prometheus scrapes it. Everything it started is removed at the end (the images stay, as a build cache).
#
# If Docker cannot be installed or started, it prints `SKIPPED: <reason>` and exits 0.
#
# WARREN_DOCKER_PRE_METRICS=1 turns the checks that need the metrics work (the /metrics endpoint,
# Prometheus's scrape, monitoring/grafana/dashboards/warren.json) into warnings: for a branch
# without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/interop-tests/docker
bin=${WARREN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}/debug/warren}
pre_metrics=${WARREN_DOCKER_PRE_METRICS:-0}
start_time=$SECONDS

say() { printf '[docker] %s\n' "$*"; }
skip() { echo "SKIPPED: $*"; exit 0; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# A check that needs the metrics work: fatal, or a warning with WARREN_DOCKER_PRE_METRICS=1.
metrics_fail() {
  if [[ $pre_metrics == 1 ]]; then say "WARNING (expected before the metrics work lands): $*"; else fail "$*"; fi
}

[[ -x $bin ]] || fail "no warren binary at $bin (set WARREN_BIN)"

# --- Docker itself ------------------------------------------------------------------------------
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  say "installing ${need[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
    || skip "cannot install ${need[*]} with apt-get"
fi
command -v docker >/dev/null || skip "no docker command after installing docker.io"

started_dockerd=""
work=$(mktemp -d)
project=warren-dockertest-$$
compose_cmd=()
cleanup() {
  local rc=$?
  if ((${#compose_cmd[@]})); then
    if ((rc != 0)); then
      say "--- logs of the stack"
      "${compose_cmd[@]}" logs --no-color --tail=60 2>&1 | tail -200 || true
    fi
    "${compose_cmd[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  docker rm -f -v "$project-definitions" >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
  if [[ -n $started_dockerd ]]; then
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || skip "dockerd is not installed"
  say "starting dockerd (log: $work/dockerd.log)"
  dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 150); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$started_dockerd" 2>/dev/null || break
    sleep 0.2
  done
  if ! docker info >/dev/null 2>&1; then
    reason=$(grep -iE 'level=(fatal|error)' "$work/dockerd.log" | tail -1 | cut -c1-300)
    started_dockerd=""
    skip "dockerd does not start here: ${reason:-see its log}"
  fi
fi
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
say "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -1)"

# --- images -------------------------------------------------------------------------------------
# debian:bookworm-slim, built here: a debootstrap minbase trimmed as Debian's slim images are (no
# man pages, docs or translations, also for packages installed later).
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  mirror=$(grep -hoE '^(deb|URIs:) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  say "building debian:bookworm-slim with debootstrap from $mirror (once) ..."
  rootfs=$work/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -5 "$work/debootstrap.log"; skip "debootstrap failed"; }
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
fi

say "building Warren's image (Dockerfile, target prebuilt) from $bin"
ctx=$work/warren-context
mkdir -p "$ctx/dist" "$ctx/docker"
cp Dockerfile .dockerignore "$ctx/"
cp docker/entrypoint.sh "$ctx/docker/"
strip -o "$ctx/dist/warren" "$bin" 2>/dev/null || cp "$bin" "$ctx/dist/warren"
warren_image=warren:docker-test
docker build -q --target prebuilt -t "$warren_image" "$ctx" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; fail "docker build of Warren's image"; }

say "building stand-ins for prom/prometheus and node:20-bookworm-slim"
prometheus_image=warren-test/prometheus:local
docker build -q -t "$prometheus_image" -f "$here/prometheus.Dockerfile" "$here" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; fail "docker build of the Prometheus stand-in"; }
node_image=warren-test/node:local
command -v node >/dev/null && command -v npm >/dev/null \
  || fail "node and npm are needed for the Node stand-in (scripts/install-deps.sh --test installs them)"
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
# The host's Node is copied only when it needs nothing beyond the base image's libraries.
if ldd "$node_bin" 2>/dev/null | grep -qvE 'linux-vdso|libc\.so|libm\.so|libdl\.so|libpthread\.so|libstdc\+\+|libgcc_s|ld-linux'; then
  fail "the host's node ($node_bin) links libraries the base image lacks; a Node stand-in cannot be made from it"
fi
nctx=$work/node-context
mkdir -p "$nctx"
cp "$here/node.Dockerfile" "$nctx/Dockerfile"
cp "$node_bin" "$nctx/node"
cp -r "$npm_dir" "$nctx/npm"
cp /etc/ssl/certs/ca-certificates.crt "$nctx/"
docker build -q -t "$node_image" "$nctx" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; fail "docker build of the Node stand-in"; }

# --- the stack's settings: free loopback ports, a default user other than guest ----------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export COMPOSE_PROJECT_NAME=$project
export WARREN_IMAGE=$warren_image NODE_IMAGE=$node_image PROMETHEUS_IMAGE=$prometheus_image
export WARREN_PUBLISH_IP=127.0.0.1
export WARREN_AMQP_PORT=$(free_port) WARREN_AMQPS_PORT=$(free_port) WARREN_MGMT_PORT=$(free_port)
export WARREN_METRICS_PORT=$(free_port) PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
export RABBITMQ_DEFAULT_USER=app RABBITMQ_DEFAULT_PASS="pw-$RANDOM$RANDOM"
export COUNT=20 ROUNDS=1 EXPECT=20 MAX_ATTEMPTS=3
mgmt=http://127.0.0.1:$WARREN_MGMT_PORT
auth=(-u "$RABBITMQ_DEFAULT_USER:$RABBITMQ_DEFAULT_PASS")
compose_cmd=("${compose[@]}" -f "$repo/docker-compose.yml")

say "validating docker-compose.yml"
"${compose_cmd[@]}" config -q || fail "compose config rejects docker-compose.yml"
# Every run also checks the file with the stock settings (no test variables).
(env -u WARREN_IMAGE -u NODE_IMAGE -u PROMETHEUS_IMAGE -u COMPOSE_PROJECT_NAME "${compose[@]}" -f "$repo/docker-compose.yml" config -q) \
  || fail "compose config rejects docker-compose.yml with its defaults"

say "checking monitoring/prometheus.yml and its rule files with promtool"
monitoring=$repo/monitoring
if [[ ! -f monitoring/alerts.yml ]]; then
  metrics_fail "monitoring/alerts.yml (Warren's alert rules) is missing"
  # (reached only with WARREN_DOCKER_PRE_METRICS=1) check the rest against an empty rule file
  monitoring=$work/monitoring
  cp -r "$repo/monitoring" "$monitoring"
  echo 'groups: []' >"$monitoring/alerts.yml"
fi
docker run --rm -v "$monitoring:/etc/warren-monitoring:ro" --entrypoint promtool "$prometheus_image" \
  check config /etc/warren-monitoring/prometheus.yml || fail "promtool rejects monitoring/prometheus.yml or its rules"

say "checking Grafana's provisioning and dashboards (statically)"
grafana_args=("$repo")
[[ $pre_metrics == 1 ]] || grafana_args+=(--require-warren-dashboard)
python3 "$here/check_grafana.py" "${grafana_args[@]}" || fail "Grafana provisioning"

say "building the example services (compose build)"
"${compose_cmd[@]}" build -q producer consumer >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; fail "compose build of the example services"; }

# --- up -----------------------------------------------------------------------------------------
container() { "${compose_cmd[@]}" ps -q "$1"; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(container warren)"; }
wait_healthy() { # seconds; prints the seconds it took
  local t0=$SECONDS
  while ((SECONDS - t0 < $1)); do
    case $(health) in
      healthy) echo $((SECONDS - t0)); return 0 ;;
      unhealthy) return 1 ;;
    esac
    sleep 0.2
  done
  return 1
}
amqp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$WARREN_AMQP_PORT") 2>/dev/null; }

say "compose up warren"
t0=$(date +%s%N)
"${compose_cmd[@]}" up -d --no-build warren >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "compose up warren"; }
until amqp_open; do
  (($(date +%s%N) - t0 < 60000000000)) || fail "the AMQP port $WARREN_AMQP_PORT is not published/accepting after 60 s"
  sleep 0.05
done
amqp_ms=$((($(date +%s%N) - t0) / 1000000))
wait_healthy 60 >/dev/null || fail "warren did not turn healthy (health: $(health))"
healthy_ms=$((($(date +%s%N) - t0) / 1000000))
say "cold start: AMQP port accepting after ${amqp_ms} ms, container healthy after ${healthy_ms} ms"
[[ $(docker inspect -f '{{.Config.User}}' "$(container warren)") == warren ]] || fail "warren does not run as the user warren"

say "management API through the published port $WARREN_MGMT_PORT"
overview=$(curl -fsS "${auth[@]}" "$mgmt/api/overview") || fail "GET /api/overview as $RABBITMQ_DEFAULT_USER"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "object_totals" in d, d' "$overview" \
  || fail "/api/overview is not the overview"
code=$(curl -s -o /dev/null -w '%{http_code}' -u guest:guest "$mgmt/api/overview")
[[ $code == 401 ]] || fail "guest should not exist when RABBITMQ_DEFAULT_USER is set (got HTTP $code)"

say "compose up producer consumer prometheus (they wait for warren: service_healthy)"
"${compose_cmd[@]}" up -d --no-build producer consumer prometheus >"$work/up.log" 2>&1 \
  || { cat "$work/up.log"; fail "compose up of the example services and prometheus"; }
for svc in producer consumer; do
  id=$(container "$svc")
  rc=$(timeout 120 docker wait "$id") || fail "$svc did not finish within 120 s"
  [[ $rc == 0 ]] || fail "$svc exited with $rc"
done
consumer_log=$("${compose_cmd[@]}" logs --no-color consumer)
summary=$(grep -o 'consumer: done: .*' <<<"$consumer_log" | tail -1)
say "examples finished: ${summary#consumer: }"
# 20 jobs, fail plan 0,0,1,2,99 per 5 and 3 attempts: 16 done, 4 parked, 4*1 + 4*2 + 4*2 = 20 retries.
[[ $summary == "consumer: done: 16 done, 4 parked, 20 retries" ]] || fail "unexpected consumer result: '$summary'"
queue_messages() { curl -fsS "${auth[@]}" "$mgmt/api/queues/%2F/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])'; }
[[ $(queue_messages work) == 0 && $(queue_messages work.wait) == 0 ]] || fail "work or work.wait is not empty"
[[ $(queue_messages work.parking) == 4 ]] || fail "work.parking should hold the 4 jobs that always fail"

say "a persistent message survives compose restart warren"
curl -fsS "${auth[@]}" -X PUT -H 'content-type: application/json' -d '{"durable":true}' \
  "$mgmt/api/queues/%2F/docker-test.durable" >/dev/null || fail "declare docker-test.durable"
body="survives-a-restart-$RANDOM"
routed=$(curl -fsS "${auth[@]}" -X POST -H 'content-type: application/json' \
  -d "{\"properties\":{\"delivery_mode\":2},\"routing_key\":\"docker-test.durable\",\"payload\":\"$body\",\"payload_encoding\":\"string\"}" \
  "$mgmt/api/exchanges/%2F/amq.default/publish") || fail "publish through the API"
[[ $routed == *'"routed":true'* ]] || fail "the message was not routed: $routed"
"${compose_cmd[@]}" restart warren >"$work/up.log" 2>&1 || { cat "$work/up.log"; fail "compose restart warren"; }
# restart keeps the container, so its health goes starting -> healthy again
wait_healthy 60 >/dev/null || fail "warren did not turn healthy after the restart (health: $(health))"
got=$(curl -fsS "${auth[@]}" -X POST -H 'content-type: application/json' \
  -d '{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}' "$mgmt/api/queues/%2F/docker-test.durable/get") \
  || fail "get from docker-test.durable after the restart"
[[ $got == *"\"payload\":\"$body\""* ]] || fail "the persistent message did not survive the restart: $got"
[[ $(queue_messages work.parking) == 4 ]] || fail "the parked jobs did not survive the restart"

say "a definitions file mounted at /etc/warren/definitions.json is loaded at start-up"
python3 - "$work/definitions.json" <<'PY'
import base64, hashlib, json, os, sys
salt = os.urandom(4)  # RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password))
digest = hashlib.sha256(salt + b"defs-secret").digest()
json.dump({
    "users": [{"name": "defs-user", "password_hash": base64.b64encode(salt + digest).decode(),
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]}],
    "vhosts": [{"name": "/"}],
    "permissions": [{"user": "defs-user", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    "queues": [{"name": "defs.queue", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {"x-max-length": 10}}],
}, open(sys.argv[1], "w"))
PY
chmod 644 "$work/definitions.json"
defs_container=$project-definitions
docker run -d --rm --name "$defs_container" -v "$work/definitions.json:/etc/warren/definitions.json:ro" \
  "$warren_image" >/dev/null || fail "docker run with a definitions file"
defs_ok=""
for _ in $(seq 1 100); do
  if [[ $(docker inspect -f '{{.State.Health.Status}}' "$defs_container" 2>/dev/null) == healthy ]] \
    || docker exec "$defs_container" warren ctl -q check_port_connectivity >/dev/null 2>&1; then
    queues=$(docker exec "$defs_container" warren ctl -s -u defs-user --password defs-secret list_queues name arguments 2>&1) || true
    [[ $queues == *defs.queue*x-max-length* ]] && defs_ok=1
    break
  fi
  sleep 0.2
done
docker rm -f -v "$defs_container" >/dev/null 2>&1 || true
[[ -n $defs_ok ]] || fail "the mounted definitions were not loaded (list_queues as defs-user: ${queues:-no answer})"

say "/metrics through the published port $WARREN_METRICS_PORT, and Prometheus scraping it"
if metrics=$(curl -fsS --max-time 10 "http://127.0.0.1:$WARREN_METRICS_PORT/metrics" 2>&1); then
  grep -q '^rabbitmq_' <<<"$metrics" || metrics_fail "/metrics answers but has no rabbitmq_* series"
  prom=http://127.0.0.1:$PROMETHEUS_PORT
  state=""
  for _ in $(seq 1 60); do # the first scrape comes within one interval (15 s)
    state=$(curl -fsS "$prom/api/v1/targets" 2>/dev/null | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
print(",".join(t["health"] for t in targets if t["labels"].get("job") == "warren"))' 2>/dev/null || true)
    [[ $state == up ]] && break
    sleep 1
  done
  [[ $state == up ]] || metrics_fail "Prometheus does not scrape warren:15692 (target health: '${state:-none}')"
  rules=$(curl -fsS "$prom/api/v1/rules" | python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
  ((rules > 0)) || metrics_fail "Prometheus loaded no alert rules from monitoring/alerts.yml"
  say "Prometheus scrapes warren (target up), $rules alert rules loaded"
else
  metrics_fail "GET http://127.0.0.1:$WARREN_METRICS_PORT/metrics: ${metrics:0:200}"
  curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null || fail "Prometheus is not ready"
  say "Prometheus runs (its warren target stays down without /metrics)"
fi

say "image $(docker image inspect -f '{{.Size}}' "$warren_image" | awk '{printf "%.0f MB", $1/1e6}') (base debian:bookworm-slim $(docker image inspect -f '{{.Size}}' debian:bookworm-slim | awk '{printf "%.0f MB", $1/1e6}'))"
say "passed in $((SECONDS - start_time)) s"
echo "1 passed, 0 failed"
