#!/usr/bin/env bash
# Runs the same load scenarios against Warren and the reference RabbitMQ, one after the other,
# with `warren perf` as the client for both, and prints their figures side by side with ratios.
#
#   bench/compare.sh [SCENARIO...]        default: S1
#   bench/compare.sh S1 S3 S4             several, in that order
#   bench/compare.sh --list               what each scenario is
#
# Scenarios (S2 and S6 persistent, the others transient):
#   S1  1 producer -> 1 queue -> 1 consumer, 16 B, auto-ack, unlimited rate
#   S1m S1 with the client writing each message with its own syscall (`--write-per message`)
#   S1f S1 with the client writing each frame with its own syscall (`--write-per frame`)
#   S2  1 KiB persistent into a durable queue, confirms (window 100), manual acks, prefetch 100
#   S3  1 producer -> fanout exchange -> 10 queues -> 10 consumers, 16 B, auto-ack
#   S4  4 producers -> 4 queues -> 4 consumers, 16 B, auto-ack
#   S5  latency at a fixed 1,000 msg/s: confirms (window 100), consumer acks each, prefetch 100
#   S7  1,000 idle connections (one channel each): broker memory per connection
#   S8  topic exchange with 1,000 wildcard bindings, 1 producer -> 1 consumer, 16 B, auto-ack
#   S6  backlog: S6_MESSAGES x 1 KiB persistent published with confirms into a durable queue with
#       no consumer, then drained by 1 consumer (manual acks, prefetch 100): two `warren perf`
#       runs (--keep-queues, then --producers 0 --cmessages N). Warren is stopped with SIGTERM
#       between them and restarted on the same data directory: its recovery time is measured
#       (AMQP connection.start received) and its "recovered from the store" log line kept.
#       RabbitMQ is not restarted. Table: publish rate, drain rate, peak RSS of each phase.
#   S9  TTL + dead-letter retry: S9_MESSAGES x 24 B persistent, published with confirms (window
#       100) each to one of S9_TTL_QUEUES durable wait queues picked at random, whose
#       x-message-ttl values are spread evenly over S9_TTL_MS and which dead-letter into the
#       durable queue one auto-ack consumer reads. Lateness = receive time - (send time + TTL).
#       Then, for reference, Warren alone with its delayed-message exchange on the same scale
#       (x-delay uniform over S9_TTL_MS; RabbitMQ's reference instance has no such plugin).
#       Table: publishing and delivery rates, lateness, broker CPU and peak RSS.
#
# What it does: builds Warren (release) into $CARGO_TARGET_DIR (default ~/.cache/warren-target),
# makes sure the reference RabbitMQ runs (../shared/tools/reference-rabbitmq.sh start), then for
# each scenario starts a fresh Warren on a free port with a new temporary data directory, runs
# `warren perf ... --broker-pid PID --json` against it, stops it, runs the same against RabbitMQ
# (PID = its beam.smp), and finally prints a table (Markdown). RabbitMQ is left running.
#
# Environment:
#   DURATION=20          seconds per run (S7 holds its connections for 5 s; S6 is counted)
#   S6_MESSAGES=1000000  S6 backlog size for Warren
#   S6_RABBIT_MESSAGES=  S6 backlog size for RabbitMQ (default: S6_MESSAGES)
#   S9_MESSAGES=1000000  S9 messages for Warren (and its delayed-exchange run)
#   S9_RABBIT_MESSAGES=  S9 messages for RabbitMQ (default: S9_MESSAGES)
#   S9_TTL_QUEUES=16     S9 wait queues
#   S9_TTL_MS=1000..60000  S9 range of their TTLs (ms)
#   S9_DELAYED=1         0: skip Warren's delayed-exchange reference run in S9
#   PERF_THREADS=1       worker threads of the load generator (`warren perf --threads`)
#   RABBITMQ_URI=...     use this RabbitMQ instead of the reference one
#   RABBITMQ_PID=...     its broker process for CPU/RSS figures (default: beam.smp of the reference)
#   RESULTS_DIR=...      where the JSON lines and logs go (default: a new temporary directory)
#   QUIET_WAIT=900       seconds to wait, before each run, for the machine to be quiet: no
#   QUIET_BUSY=15        compiler running and less than QUIET_BUSY % of the CPUs busy (on 2 cores
#                        anything else running distorts every figure); then it measures anyway
#
# To add a scenario: a line in describe() and one in flags_of(), then list it above.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
S6_MESSAGES=${S6_MESSAGES:-1000000}
S6_RABBIT_MESSAGES=${S6_RABBIT_MESSAGES:-$S6_MESSAGES}
S9_MESSAGES=${S9_MESSAGES:-1000000}
S9_RABBIT_MESSAGES=${S9_RABBIT_MESSAGES:-$S9_MESSAGES}
S9_TTL_QUEUES=${S9_TTL_QUEUES:-16}
S9_TTL_MS=${S9_TTL_MS:-1000..60000}
S9_DELAYED=${S9_DELAYED:-1}
PERF_THREADS=${PERF_THREADS:-1}
QUIET_WAIT=${QUIET_WAIT:-900}
QUIET_BUSY=${QUIET_BUSY:-15}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
WARREN=$CARGO_TARGET_DIR/release/warren

describe() {
  case $1 in
    S1) echo "1 producer -> 1 queue -> 1 consumer, 16 B transient, auto-ack, unlimited rate" ;;
    S1m) echo "S1, the client writing each message with its own syscall (as pika and the Java client do)" ;;
    S1f) echo "S1, the client writing each frame with its own syscall" ;;
    S3) echo "fanout to 10 queues, 10 consumers, 16 B transient, auto-ack, unlimited rate" ;;
    S4) echo "4 producers -> 4 queues -> 4 consumers, 16 B transient, auto-ack, unlimited rate" ;;
    S5) echo "1,000 msg/s fixed rate, confirms (window 100), acks each, prefetch 100: latency" ;;
    S7) echo "1,000 idle connections with a channel each: broker RSS per connection" ;;
    S8) echo "topic exchange, 1,000 wildcard bindings, 1 producer -> 1 consumer, 16 B, auto-ack" ;;
    S2) echo "1 KiB persistent, durable queue, confirms (window 100), manual acks, prefetch 100" ;;
    S6) echo "backlog of ${S6_MESSAGES} x 1 KiB persistent (no consumer), then drained; Warren restarted between" ;;
    S9) echo "TTL + dead-letter retry: ${S9_MESSAGES} x 24 B persistent, confirms (window 100), ${S9_TTL_QUEUES} wait queues with TTLs ${S9_TTL_MS} ms, auto-ack" ;;
    *) return 1 ;;
  esac
}

flags_of() {
  local d=$DURATION
  case $1 in
    S1) echo "--producers 1 --consumers 1 --size 16 --auto-ack --duration $d" ;;
    S1m) echo "--producers 1 --consumers 1 --size 16 --auto-ack --write-per message --duration $d" ;;
    S1f) echo "--producers 1 --consumers 1 --size 16 --auto-ack --write-per frame --duration $d" ;;
    S3) echo "--producers 1 --consumers 10 --fanout-queues 10 --size 16 --auto-ack --duration $d" ;;
    S4) echo "--producers 4 --consumers 4 --queue-pattern perf-s4-%d --queues 4 --size 16 --auto-ack --duration $d" ;;
    S5) echo "--producers 1 --consumers 1 --size 16 --rate 1000 --confirm 100 --prefetch 100 --duration $d" ;;
    S7) echo "--producers 0 --consumers 0 --idle-connections 1000 --duration 5" ;;
    S8) echo "--producers 1 --consumers 1 --exchange-type topic --topic-bindings 1000 --size 16 --auto-ack --duration $d" ;;
    S2) echo "--producers 1 --consumers 1 --size 1024 --persistent --confirm 100 --prefetch 100 --duration $d" ;;
    # S6 is two runs; the message count is appended by run_s6.
    S6-publish) echo "--queue warren-perf-s6 --producers 1 --consumers 0 --size 1024 --persistent --confirm 100 --keep-queues --pmessages" ;;
    S6-drain) echo "--queue warren-perf-s6 --producers 0 --consumers 1 --size 1024 --persistent --prefetch 100 --keep-queues --cmessages" ;;
    # S9 is counted; the message count is appended by run_s9.
    S9) echo "--queue warren-perf-s9 --ttl-queues $S9_TTL_QUEUES --ttl-ms $S9_TTL_MS --producers 1 --consumers 1 --size 24 --persistent --confirm 100 --auto-ack --pmessages" ;;
    S9-delayed) echo "--queue warren-perf-s9 --delayed-exchange --delay-ms $S9_TTL_MS --producers 1 --consumers 1 --size 24 --persistent --confirm 100 --auto-ack --pmessages" ;;
    *) return 1 ;;
  esac
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ ${1:-} == --list ]]; then
  for s in S1 S2 S3 S4 S5 S7 S8; do printf '%s  %s\n      warren perf %s\n' "$s" "$(describe $s)" "$(flags_of $s)"; done
  printf 'S6  %s\n      warren perf %s N\n      warren perf %s N\n' "$(describe S6)" "$(flags_of S6-publish)" "$(flags_of S6-drain)"
  printf 'S9  %s\n      warren perf %s N\n      (Warren only) warren perf %s N\n' "$(describe S9)" "$(flags_of S9)" "$(flags_of S9-delayed)"
  exit 0
fi
scenarios=("$@")
[[ ${#scenarios[@]} -eq 0 ]] && scenarios=(S1)
for s in "${scenarios[@]}"; do
  describe "$s" >/dev/null || { echo "unknown scenario '$s' (try --list)" >&2; exit 2; }
done

RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/warren-compare.XXXXXX)}
mkdir -p "$RESULTS_DIR"
echo "results and logs: $RESULTS_DIR" >&2

echo "=== building Warren (release)" >&2
cargo build --release --bin warren >&2

# --- Warren on a free port, fresh data directory -------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port [tries of 0.1 s]
  for _ in $(seq 1 "${2:-100}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# A fresh Warren (new process, new data directory) for every scenario, so that memory figures
# and leftovers of one scenario never carry into the next. RabbitMQ is shared with other work
# on this machine and keeps running; its peak RSS is reset (VmHWM) at the start of each run.
warren_pid=
warren_data=
start_warren() { # [reuse [log level]]: with reuse, the port and data directory of the last one
  if [[ ${1:-} != reuse ]]; then
    warren_port=$(free_port)
    warren_data=$(mktemp -d /tmp/warren-compare-data.XXXXXX)
  fi
  "$WARREN" serve --bind 127.0.0.1 --port "$warren_port" --mgmt-port 0 --prometheus-port 0 --data-dir "$warren_data" --log-level "${2:-warn}" \
    >>"$RESULTS_DIR/warren.log" 2>&1 &
  warren_pid=$!
  wait_port "$warren_port" 3000 || { echo "Warren did not start; see $RESULTS_DIR/warren.log" >&2; exit 1; }
  WARREN_URI="amqp://guest:guest@127.0.0.1:$warren_port/%2F"
}
stop_warren() {
  [[ -n $warren_pid ]] || return 0
  kill "$warren_pid" 2>/dev/null || true
  wait "$warren_pid" 2>/dev/null || true
  rm -rf "$warren_data"
  warren_pid=
}
trap stop_warren EXIT
# SIGTERM, wait for the exit, keep the data directory.
term_warren() {
  kill -TERM "$warren_pid" 2>/dev/null || true
  wait "$warren_pid" 2>/dev/null || true
  warren_pid=
}
# Seconds since start (Unix time, from `date +%s.%N`) until an AMQP protocol header on the port
# is answered with connection.start.
wait_amqp() { # port timeout_s start
  python3 - "$1" "$2" "$3" <<'PY'
import socket, sys, time
port, limit, t0 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
while time.time() - t0 < limit:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            if s.recv(7)[:1] == b"\x01":
                print(f"{time.time() - t0:.3f}")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
sys.exit(1)
PY
}

# --- RabbitMQ ---------------------------------------------------------------------------------
if [[ -n ${RABBITMQ_URI:-} ]]; then
  rabbit_uri=$RABBITMQ_URI
  rabbit_pid=${RABBITMQ_PID:-}
else
  rabbit_uri=$(../shared/tools/reference-rabbitmq.sh start | sed -n 1p)  # sed reads it all: head could SIGPIPE the script (pipefail)
  base=${BASE:-/tmp/reference-rabbitmq-${PORT:-5680}}
  # The script records the pid of the rabbitmq-server shell wrapper; the broker is its beam.smp.
  rabbit_pid=${RABBITMQ_PID:-}
  if [[ -z $rabbit_pid ]]; then
    todo=("$(cat "$base/server.pid")")
    while [[ ${#todo[@]} -gt 0 && -z $rabbit_pid ]]; do
      p=${todo[0]}; todo=("${todo[@]:1}")
      [[ $(cat "/proc/$p/comm" 2>/dev/null) == beam.smp ]] && rabbit_pid=$p && break
      mapfile -t kids < <(pgrep -P "$p" || true)
      todo+=("${kids[@]}")
    done
  fi
fi
[[ -z $rabbit_pid ]] && echo "warning: no RabbitMQ broker pid; its CPU and memory are not measured" >&2

# --- one run ----------------------------------------------------------------------------------
wait_for_quiet() {
  local waited=0 busy
  while true; do
    busy=$(cpu_busy)
    if (( busy < QUIET_BUSY )) && ! pgrep -x cc1plus >/dev/null && ! pgrep -x rustc >/dev/null; then return; fi
    if (( waited == 0 )); then echo "waiting for the machine to be quiet (CPU busy $busy %; 2 cores)..." >&2; fi
    if (( waited >= QUIET_WAIT )); then echo "warning: still busy ($busy %); measuring anyway" >&2; return; fi
    sleep 9; waited=$((waited + 10))
  done
}

# Busy share of all CPUs over one second, from /proc/stat: what else runs on the machine.
cpu_busy() {
  read -r _ a1 a2 a3 a4 a5 a6 a7 _ </proc/stat
  sleep 1
  read -r _ b1 b2 b3 b4 b5 b6 b7 _ </proc/stat
  local idle=$(( (b4 + b5) - (a4 + a5) ))
  local total=$(( (b1 + b2 + b3 + b4 + b5 + b6 + b7) - (a1 + a2 + a3 + a4 + a5 + a6 + a7) ))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

run_one() { # scenario label uri pid
  local s=$1 label=$2 uri=$3 pid=$4
  local pid_flag=()
  [[ -n $pid ]] && pid_flag=(--broker-pid "$pid")
  wait_for_quiet
  local busy
  busy=$(cpu_busy)
  # shellcheck disable=SC2046  # the flags are meant to split
  local cmd=("$WARREN" perf --uri "$uri" $(flags_of "$s") --threads "$PERF_THREADS" --label "$label" "${pid_flag[@]}" --json)
  echo "=== $s on $label (CPU busy before the run: $busy %)" >&2
  echo "    ${cmd[*]}" >&2
  if "${cmd[@]}" >"$RESULTS_DIR/$s-$label.json" 2>"$RESULTS_DIR/$s-$label.log"; then :; else
    echo "    (exit status $?: errors or missing messages; see $RESULTS_DIR/$s-$label.log)" >&2
  fi
  tail -n 20 "$RESULTS_DIR/$s-$label.log" | grep -v '^\[' >&2 || true
  sleep 2 # let both brokers settle before the next run
}

# S6: publish a backlog (no consumer), [Warren: SIGTERM, restart, recovery time], drain it.
run_s6() { # label uri pid messages
  local label=$1 uri=$2 pid=$3 n=$4
  local pid_flag=()
  [[ -n $pid ]] && pid_flag=(--broker-pid "$pid")
  wait_for_quiet
  # shellcheck disable=SC2046
  local cmd=("$WARREN" perf --uri "$uri" $(flags_of S6-publish) "$n" --threads "$PERF_THREADS" --label "$label" "${pid_flag[@]}" --json)
  echo "=== S6 publish on $label ($n messages)" >&2
  echo "    ${cmd[*]}" >&2
  "${cmd[@]}" >"$RESULTS_DIR/S6-publish-$label.json" 2>"$RESULTS_DIR/S6-publish-$label.log" \
    || echo "    (exit status $?; see $RESULTS_DIR/S6-publish-$label.log)" >&2
  tail -n 20 "$RESULTS_DIR/S6-publish-$label.log" | grep -v '^\[' >&2 || true
  if [[ $label == warren ]]; then
    echo "=== S6 Warren: SIGTERM, restart on the same data directory ($(du -sh "$warren_data" | cut -f1))" >&2
    term_warren
    local t0 log_from
    log_from=$(wc -l <"$RESULTS_DIR/warren.log")
    t0=$(date +%s.%N)
    "$WARREN" serve --bind 127.0.0.1 --port "$warren_port" --mgmt-port 0 --prometheus-port 0 --data-dir "$warren_data" --log-level info \
      >>"$RESULTS_DIR/warren.log" 2>&1 &
    warren_pid=$!
    pid=$warren_pid
    pid_flag=(--broker-pid "$pid")
    local secs
    secs=$(wait_amqp "$warren_port" 300 "$t0") || { echo "Warren did not come back; see $RESULTS_DIR/warren.log" >&2; exit 1; }
    echo "    accepting AMQP after $secs s; RSS $(grep VmRSS /proc/"$pid"/status | awk '{print $2}') KiB" >&2
    tail -n +"$((log_from + 1))" "$RESULTS_DIR/warren.log" | grep 'recovered from the store' | sed 's/\x1b\[[0-9;]*m//g' | tee -a /dev/stderr \
      >"$RESULTS_DIR/S6-recovery-warren.log" || true
    echo "$secs" >"$RESULTS_DIR/S6-recovery-warren.secs"
    grep VmRSS /proc/"$pid"/status | awk '{print $2}' >"$RESULTS_DIR/S6-recovery-warren.rss_kib"
    sleep 2
  fi
  # shellcheck disable=SC2046
  cmd=("$WARREN" perf --uri "$uri" $(flags_of S6-drain) "$n" --threads "$PERF_THREADS" --label "$label" "${pid_flag[@]}" --json)
  echo "=== S6 drain on $label" >&2
  echo "    ${cmd[*]}" >&2
  "${cmd[@]}" >"$RESULTS_DIR/S6-drain-$label.json" 2>"$RESULTS_DIR/S6-drain-$label.log" \
    || echo "    (exit status $?; see $RESULTS_DIR/S6-drain-$label.log)" >&2
  tail -n 20 "$RESULTS_DIR/S6-drain-$label.log" | grep -v '^\[' >&2 || true
  # Remove the queue (RabbitMQ is shared; Warren's data directory goes anyway).
  "$WARREN" perf --uri "$uri" --queue warren-perf-s6 --persistent --producers 0 --consumers 1 --duration 0.5 \
    --quiet >/dev/null 2>&1 || true
  sleep 2
}

# S9: one counted run of N messages (the scenario's flags with N appended) under a result name.
run_counted() { # scenario name label uri pid messages
  local s=$1 name=$2 label=$3 uri=$4 pid=$5 n=$6
  local pid_flag=()
  [[ -n $pid ]] && pid_flag=(--broker-pid "$pid")
  wait_for_quiet
  local busy
  busy=$(cpu_busy)
  # shellcheck disable=SC2046
  local cmd=("$WARREN" perf --uri "$uri" $(flags_of "$s") "$n" --threads "$PERF_THREADS" --label "$label" "${pid_flag[@]}" --json)
  echo "=== $name on $label, $n messages (CPU busy before the run: $busy %; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  echo "    ${cmd[*]}" >&2
  if "${cmd[@]}" >"$RESULTS_DIR/$name-$label.json" 2>"$RESULTS_DIR/$name-$label.log"; then :; else
    echo "    (exit status $?: errors or missing messages; see $RESULTS_DIR/$name-$label.log)" >&2
  fi
  tail -n 20 "$RESULTS_DIR/$name-$label.log" | grep -v '^\[' >&2 || true
  sleep 2
}

for s in "${scenarios[@]}"; do
  if [[ $s == S9 ]]; then
    start_warren
    run_counted S9 S9 warren "$WARREN_URI" "$warren_pid" "$S9_MESSAGES"
    stop_warren
    run_counted S9 S9 rabbitmq "$rabbit_uri" "$rabbit_pid" "$S9_RABBIT_MESSAGES"
    if [[ $S9_DELAYED != 0 ]]; then
      start_warren
      run_counted S9-delayed S9 warren-delayed "$WARREN_URI" "$warren_pid" "$S9_MESSAGES"
      stop_warren
    fi
    continue
  fi
  if [[ $s == S6 ]]; then
    start_warren
    run_s6 warren "$WARREN_URI" "$warren_pid" "$S6_MESSAGES"
    stop_warren
    run_s6 rabbitmq "$rabbit_uri" "$rabbit_pid" "$S6_RABBIT_MESSAGES"
    continue
  fi
  start_warren
  run_one "$s" warren "$WARREN_URI" "$warren_pid"
  stop_warren
  run_one "$s" rabbitmq "$rabbit_uri" "$rabbit_pid"
done

# --- the table --------------------------------------------------------------------------------
echo
echo "Warren vs RabbitMQ, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load generator: warren perf --threads $PERF_THREADS"
python3 - "$RESULTS_DIR" "${scenarios[@]}" <<'PY'
import json, sys, os

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

for s in scenarios:
    if s == "S6":
        s6()
        continue
    if s == "S9":
        s9()
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
PY
