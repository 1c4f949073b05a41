#!/usr/bin/env bash
# A/B of two Warren builds on one scenario: runs `warren perf` against a fresh broker of each
# build in turn (interleaved, ROUNDS times, a new data directory each run) and prints the
# summary lines of every run — for a change whose effect is smaller than the noise between two
# separate bench/compare.sh sessions.
#
#   bench/ab.sh BEFORE_BIN AFTER_BIN [warren perf flags...]
#   e.g. bench/ab.sh /tmp/warren-before /tmp/warren-after \
#          --producers 1 --consumers 1 --size 1024 --persistent --confirm 100 --prefetch 100 --duration 10
#
# Env: ROUNDS=2, PORT=5761. The load generator is AFTER_BIN's `warren perf`.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
before=$1 after=$2
shift 2
rounds=${ROUNDS:-2} port=${PORT:-5761}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
for round in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before
    [[ $which == after ]] && bin=$after
    rm -rf "$data/d"
    "$bin" --bind 127.0.0.1 --port "$port" --mgmt-port 0 --prometheus-port 0 --data-dir "$data/d" --log-level warn \
      >"$data/$which.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    "$after" perf --uri "amqp://guest:guest@127.0.0.1:$port/%2F" --broker-pid "$pid" "$@" 2>&1 |
      grep -E '^  (received|confirm lat|e2e latency|broker|machine)' | sed "s/^/$which #$round: /"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
