#!/usr/bin/env bash
# A/B of Warren builds on S6, the durable backlog: for each build in turn (interleaved, ROUNDS
# times, a fresh data directory each time) publish N x 1 KiB persistent messages with confirms
# and no consumer, restart the broker on the same data, drain them; prints the broker's CPU for
# each phase. bench/compare.sh S6 measures the same against other brokers; this is for a store
# change smaller than the noise between two compare.sh sittings.
#
#   bench/ab-s6.sh BIN [BIN...]
#   e.g. ROUNDS=3 bench/ab-s6.sh /tmp/warren-before /tmp/warren-after
#
# Env: ROUNDS=2, N=300000, PORT=5781. The load generator is each build's own `warren perf`.
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=${ROUNDS:-2} n=${N:-300000} port=${PORT:-5781}
data=$(mktemp -d)
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$data"' EXIT

start() {
  "$1" --bind 127.0.0.1 --port "$port" --mgmt-port 0 --prometheus-port 0 --data-dir "$data/d" \
    --log-level warn >>"$data/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done
  echo "no broker on $port" >&2
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

# The rate of `$1` (published or received) and the broker's CPU from a `warren perf` summary.
figures() { grep -E "^  ($1|broker) " | grep -oE '[0-9]+ msg/s|[0-9.]+ s CPU' | tr '\n' ' '; }

for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    rm -rf "$data/d"
    start "$bin"
    publish=$("$bin" perf --uri "amqp://guest:guest@127.0.0.1:$port/%2F" --broker-pid "$pid" --queue s6 \
      --producers 1 --consumers 0 --size 1024 --persistent --confirm 100 --keep-queues --pmessages "$n" 2>&1 | figures published || true)
    stop
    start "$bin"
    drain=$("$bin" perf --uri "amqp://guest:guest@127.0.0.1:$port/%2F" --broker-pid "$pid" --queue s6 \
      --producers 0 --consumers 1 --size 1024 --persistent --prefetch 100 --keep-queues --cmessages "$n" 2>&1 | figures received || true)
    stop
    echo "$(basename "$bin") #$round: publish ${publish:-failed}| drain ${drain:-failed}"
  done
done
