#!/usr/bin/env bash
# Scenario: a slow disk. An LD_PRELOAD shim (slowdisk.c, compiled here with gcc) delays every
# fsync/fdatasync by DELAY_MS (default 20). Measured with and without it: the confirm latency of
# one message at a time (pika) and of a window of 100 (warren perf, persistent). Confirms slow
# down by about the delay and none comes sooner than the delay (a confirm only after its sync);
# then KILL_ROUNDS (default 10) kill -9 rounds under confirmed load on the slow disk lose nothing.
#   DELAY_MS (default 20), KILL_ROUNDS (default 10), MESSAGES one at a time (default 200)
source "$(dirname "$0")/lib.sh"
delay=${DELAY_MS:-20}
need_python
command -v gcc >/dev/null || { say "installing gcc"; apt-get install -y -q gcc >/dev/null; }
gcc -shared -fPIC -O2 -o "$work/slowdisk.so" "$here/slowdisk.c" -ldl
bin=$(warren_bin)

declare -A fig
for mode in fast slow; do
  if [[ $mode == slow ]]; then
    export SLOW_DISK_DELAY_MS=$delay
    start_broker --preload "$work/slowdisk.so" --log-level warn
  else
    start_broker --log-level warn
  fi
  say "$mode disk: warren pid $broker_pid on port $port"
  url="amqp://guest:guest@127.0.0.1:$port/%2F"
  one=$("$py" "$here/confirm_latency.py" "$url" --messages "${MESSAGES:-200}")
  window=$("$bin" perf --uri "$url" --queue pressure-slow-window --exchange "" --persistent --confirm 100 \
    --size 1024 --producers 1 --consumers 0 --duration 10 --broker-pid "$broker_pid" --json --quiet 2>/dev/null | tail -1)
  broker_alive
  stop_broker
  read -r fig[$mode.min] fig[$mode.p50] fig[$mode.p99] < <("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f %.2f %.2f" % (d["min_ms"], d["p50_ms"], d["p99_ms"]))' "$one")
  read -r fig[$mode.rate] fig[$mode.wp50] fig[$mode.wp99] < <("$py" -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f %.1f %.1f" % (d["confirmed"] / d["seconds"], d["confirm_p50_us"] / 1000, d["confirm_p99_us"] / 1000))' "$window")
  printf '%s disk: one at a time: confirm min %s ms, p50 %s ms, p99 %s ms; window of 100: %s confirms/s, p50 %s ms, p99 %s ms\n' \
    "$mode" "${fig[$mode.min]}" "${fig[$mode.p50]}" "${fig[$mode.p99]}" "${fig[$mode.rate]}" "${fig[$mode.wp50]}" "${fig[$mode.wp99]}"
done
unset SLOW_DISK_DELAY_MS

# kill -9 rounds with the slow disk: the test starts Warren through this wrapper (exec, so the
# process it kills is Warren itself).
wrapper=$work/warren-slow-disk
printf '#!/bin/sh\nSLOW_DISK_DELAY_MS=%q LD_PRELOAD=%q exec %q "$@"\n' "$delay" "$work/slowdisk.so" "$bin" >"$wrapper"
chmod +x "$wrapper"
kill_status=0
WARREN_BIN=$wrapper ROUNDS=${KILL_ROUNDS:-10} KILL9_NAME=slow_disk_kill9 KILL9_LABEL="fsync +$delay ms" PRESSURE_WORK=$work/kill9 \
  "$here/kill9.sh" || kill_status=$?

early=$("$py" -c "print('no' if ${fig[slow.min]} >= $delay else 'YES')")
verdict=PASS
[[ $early == no && $kill_status -eq 0 ]] || verdict=FAIL
result="slow_disk delay_ms=$delay fast_p50_ms=${fig[fast.p50]} slow_min_ms=${fig[slow.min]} slow_p50_ms=${fig[slow.p50]} slow_p99_ms=${fig[slow.p99]} fast_window_rate=${fig[fast.rate]} slow_window_rate=${fig[slow.rate]} slow_window_p50_ms=${fig[slow.wp50]} confirmed_before_sync=$early verdict=$verdict"
echo "RESULT $result"
[[ -n ${PRESSURE_RESULTS:-} ]] && echo "$result" >>"$PRESSURE_RESULTS"
[[ $verdict == PASS ]]
