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
#   S10 streams: S10_MESSAGES x 1 KiB published with confirms (window 100) into a fresh stream
#       (x-queue-type stream) with no consumer, then read from `first` (x-stream-offset) by
#       S10_CONSUMERS consumers (prefetch S10_PREFETCH, manual acks: each ack only returns
#       credit), each of which reads every message: two `warren perf` runs (--keep-queues, then
#       --producers 0 --cmessages CONSUMERS x N), neither broker restarted. After each, the
#       stream's size on disk (`du -sb`): Warren's whole data directory, RabbitMQ's stream
#       directory (<mnesia>/<node>/stream/__warren-perf-s10_*). The stream is deleted on RabbitMQ
#       before and after. Table: publish rate, read rate (deliveries/s over all consumers),
#       broker CPU per published and per delivered message, peak RSS of each phase, disk size.
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
#   S10_MESSAGES=1000000 S10 messages published into the stream, for Warren
#   S10_RABBIT_MESSAGES= S10 messages for RabbitMQ (default: S10_MESSAGES)
#   S10_CONSUMERS=3      S10 consumers reading the whole stream from `first`
#   S10_PREFETCH=1000    S10 consumers' basic.qos prefetch
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
S10_MESSAGES=${S10_MESSAGES:-1000000}
S10_RABBIT_MESSAGES=${S10_RABBIT_MESSAGES:-$S10_MESSAGES}
S10_CONSUMERS=${S10_CONSUMERS:-3}
S10_PREFETCH=${S10_PREFETCH:-1000}
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
    S10) echo "stream: ${S10_MESSAGES} x 1 KiB published with confirms (window 100), then read from first by ${S10_CONSUMERS} consumers (prefetch ${S10_PREFETCH}, manual acks)" ;;
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
    # S10 is two counted runs; run_s10 appends the message count (the read run's: all consumers').
    S10-publish) echo "--queue warren-perf-s10 --queue-type stream --producers 1 --consumers 0 --size 1024 --persistent --confirm 100 --keep-queues --pmessages" ;;
    S10-read) echo "--queue warren-perf-s10 --queue-type stream --producers 0 --consumers $S10_CONSUMERS --prefetch $S10_PREFETCH --stream-offset first --size 1024 --persistent --keep-queues --cmessages" ;;
    *) return 1 ;;
  esac
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ ${1:-} == --list ]]; then
  for s in S1 S2 S3 S4 S5 S7 S8; do printf '%s  %s\n      warren perf %s\n' "$s" "$(describe $s)" "$(flags_of $s)"; done
  printf 'S6  %s\n      warren perf %s N\n      warren perf %s N\n' "$(describe S6)" "$(flags_of S6-publish)" "$(flags_of S6-drain)"
  printf 'S9  %s\n      warren perf %s N\n      (Warren only) warren perf %s N\n' "$(describe S9)" "$(flags_of S9)" "$(flags_of S9-delayed)"
  printf 'S10 %s\n      warren perf %s N\n      warren perf %s %s x N\n' "$(describe S10)" "$(flags_of S10-publish)" "$(flags_of S10-read)" "$S10_CONSUMERS"
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
  base=${BASE:-}
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

# S10: the stream's size on disk, in bytes (empty if unknown).
stream_bytes() { # label
  if [[ $1 == warren ]]; then
    du -sb "$warren_data" | cut -f1
  else
    local dirs=()
    [[ -n $base ]] && mapfile -t dirs < <(compgen -G "$base/mnesia/*/stream/__warren-perf-s10_*" || true)
    if [[ ${#dirs[@]} -gt 0 ]]; then du -sbc "${dirs[@]}" | tail -n 1 | cut -f1; fi
  fi
}
delete_s10_stream() { # uri: a consumer from `next` (reads nothing), then the run deletes the stream
  "$WARREN" perf --uri "$1" --queue warren-perf-s10 --queue-type stream --producers 0 --consumers 1 --prefetch 1 \
    --duration 0.5 --quiet >/dev/null 2>&1 || true
}
run_s10() { # label uri pid messages
  local label=$1 uri=$2 pid=$3 n=$4 published
  [[ $label == rabbitmq ]] && delete_s10_stream "$uri"
  run_counted S10-publish S10-publish "$label" "$uri" "$pid" "$n"
  published=$(stream_bytes "$label")
  echo "    stream on disk after publishing: ${published:-?} bytes" >&2
  run_counted S10-read S10-read "$label" "$uri" "$pid" "$((n * S10_CONSUMERS))"
  echo "$published $(stream_bytes "$label")" >"$RESULTS_DIR/S10-disk-$label.txt"
  [[ $label == rabbitmq ]] && delete_s10_stream "$uri"
  return 0
}

for s in "${scenarios[@]}"; do
  if [[ $s == S10 ]]; then
    start_warren
    run_s10 warren "$WARREN_URI" "$warren_pid" "$S10_MESSAGES"
    stop_warren
    run_s10 rabbitmq "$rabbit_uri" "$rabbit_pid" "$S10_RABBIT_MESSAGES"
    continue
  fi
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
python3 bench/compare_table.py "$RESULTS_DIR" "${scenarios[@]}"
