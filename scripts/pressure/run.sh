#!/usr/bin/env bash
# The pressure tests (issue 17 item 5), outside the default CI run: every scenario against one
# release build, then a table of the figures. 7 to 9 minutes on 2 cores; docs/pressure.md
# has the figures of a run and what each scenario checks.
#
#   scripts/pressure/run.sh [SCENARIO...]   (default: all, in this order)
#     handshakes        10,000 concurrent connections doing the AMQP handshake      (handshakes.sh)
#     fd-limit          more connections than the broker's file-descriptor limit    (fd-limit.sh)
#     stalled-consumers 1,000 consumers that stop reading + one healthy consumer    (stalled-consumers.sh)
#     ignore-blocked    a publisher that ignores connection.blocked                 (ignore-blocked.sh)
#     pinned-buffers    small messages kept among many delivered: memory per kept one (pinned-buffers.sh)
#     kill9             100 kill -9 rounds under confirmed load                      (kill9.sh)
#     slow-disk         fsync delayed 20 ms by an LD_PRELOAD shim                    (slow-disk.sh)
#
# Each scenario script runs on its own too, with its knobs as environment variables (see its
# header). WARREN_BIN picks the broker (default: a release build made here); logs go to
# PRESSURE_LOGS (default: a new directory under /tmp, printed at the end). Loopback only.
source "$(dirname "$0")/lib.sh"
all=(handshakes fd-limit stalled-consumers ignore-blocked pinned-buffers kill9 slow-disk)
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
scenarios=("$@")
((${#scenarios[@]})) || scenarios=("${all[@]}")
for s in "${scenarios[@]}"; do
  [[ -x $here/$s.sh ]] || { echo "unknown scenario '$s' (one of: ${all[*]})" >&2; exit 2; }
done

need_python
WARREN_BIN=$(warren_bin)
export WARREN_BIN
logs=${PRESSURE_LOGS:-$(mktemp -d /tmp/warren-pressure-logs.XXXXXX)}
mkdir -p "$logs"
export PRESSURE_RESULTS=$logs/results.txt
: >"$PRESSURE_RESULTS"
say "broker: $WARREN_BIN ($("$WARREN_BIN" --version)); machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; logs: $logs"

failed=()
for s in "${scenarios[@]}"; do
  say "=== $s"
  start=$(date +%s)
  before=$(wc -l <"$PRESSURE_RESULTS")
  if "$here/$s.sh" >"$logs/$s.log" 2>&1; then
    say "$s: passed in $(($(date +%s) - start)) s"
  else
    failed+=("$s")
    say "$s: FAILED in $(($(date +%s) - start)) s (log: $logs/$s.log)"
    tail -5 "$logs/$s.log" >&2
  fi
  (($(wc -l <"$PRESSURE_RESULTS") > before)) || echo "$s figures=none(see_$s.log) verdict=FAIL" >>"$PRESSURE_RESULTS"
done

echo
echo "| scenario | verdict | figures |"
echo "|---|---|---|"
while read -r name rest; do
  verdict=$(grep -o 'verdict=[A-Z]*' <<<"$rest" | cut -d= -f2)
  figures=$(sed 's/ *verdict=[A-Z]*//; s/ /, /g; s/=/ /g' <<<"$rest")
  echo "| $name | $verdict | $figures |"
done <"$PRESSURE_RESULTS"
echo
echo "logs: $logs"
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
