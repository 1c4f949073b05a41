#!/usr/bin/env bash
# Start-up time with a persistent backlog on disk: for each Warren binary given, publishes
# MESSAGES x SIZE-byte persistent messages with confirms into one durable queue (its own fresh
# data directory), stops it with SIGTERM, then starts it again on that directory ROUNDS times
# with the page cache warm and ROUNDS times after dropping it (needs root), and prints how long
# each start took until the AMQP port accepted, the broker's own "recovered from the store"
# time, and its RSS once up. Queue recovery is all of start-up that grows with the backlog.
#
#   bench/startup.sh BIN [BIN...]         e.g. bench/startup.sh /tmp/warren-before /tmp/warren-after
#
# Env: MESSAGES=1000000, SIZE=1024, ROUNDS=2, PORT=5771, COLD=1 (0: skip the cold starts).
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
messages=${MESSAGES:-1000000} size=${SIZE:-1024} rounds=${ROUNDS:-2} port=${PORT:-5771} cold=${COLD:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Starts BIN on the data directory; sets `pid` and `took` (seconds until the port accepts).
start() {
  local started
  started=$(date +%s.%N)
  "$1" --bind 127.0.0.1 --port "$port" --mgmt-port 0 --prometheus-port 0 --data-dir "$work/data" \
    --log-level info >"$work/log" 2>&1 &
  pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.01
  done
  took=$(printf '%.2f' "$(echo "$(date +%s.%N) - $started" | bc)")
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "| binary | start | port open after (s) | recovered from the store (log) | RSS once up (MiB) |"
echo "|---|---|---:|---|---:|"
for bin in "$@"; do
  rm -rf "$work/data"
  start "$bin"
  "$bin" perf --uri "amqp://guest:guest@127.0.0.1:$port/%2F" --queue warren-startup --producers 1 --consumers 0 \
    --size "$size" --persistent --confirm 100 --keep-queues --pmessages "$messages" >/dev/null 2>&1
  stop
  kinds=(warm)
  [[ $cold == 1 ]] && kinds+=(cold)
  for kind in "${kinds[@]}"; do
    for round in $(seq 1 "$rounds"); do
      if [[ $kind == cold ]]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
      fi
      start "$bin"
      rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
      recovered=$(sed 's/\x1b\[[0-9;]*m//g' "$work/log" | grep -o 'messages=[0-9]* elapsed=[^ ]*' | head -1)
      echo "| $(basename "$bin") | $kind #$round | $took | $recovered | $rss |"
      stop
    done
  done
done
