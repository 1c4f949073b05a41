#!/usr/bin/env bash
# Runs the same load scenarios against Warren, the reference LavinMQ and the reference RabbitMQ,
# one broker after the other, with `warren perf` as the client for all three, and prints their
# figures side by side with ratios (Warren / LavinMQ, Warren / RabbitMQ).
#
#   bench/compare.sh [SCENARIO...]        default: S1
#   bench/compare.sh S1 S3 S4             several, in that order
#   BROKERS="warren rabbitmq" bench/compare.sh S1   a quick run without LavinMQ
#   bench/compare.sh --list               what each scenario is
#
# Scenarios (S2, S6, S9 and S10 persistent, the others transient):
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
#       runs (--keep-queues, then --producers 0 --cmessages N). Warren and LavinMQ are stopped
#       with SIGTERM between them and started again on the same data directory: their recovery
#       time is measured (until an AMQP protocol header is answered with connection.start) and
#       Warren's "recovered from the store" log line kept. RabbitMQ (shared, long-running) is not
#       restarted. Table: publish rate, data directory size after publishing (`du`, files' sizes
#       and blocks allocated; RabbitMQ: its whole mnesia directory), restart time, drain rate, peak
#       RSS of each phase.
#   S9  TTL + dead-letter retry: S9_MESSAGES x 24 B persistent, published with confirms (window
#       100) each to one of S9_TTL_QUEUES durable wait queues picked at random, whose
#       x-message-ttl values are spread evenly over S9_TTL_MS and which dead-letter into the
#       durable queue one auto-ack consumer reads. Lateness = receive time - (send time + TTL).
#       Then, for reference, Warren alone with its delayed-message exchange on the same scale
#       (x-delay uniform over S9_TTL_MS; the reference RabbitMQ has no such plugin).
#       Table: publishing and delivery rates, lateness, broker CPU and peak RSS.
#   S10 streams: S10_MESSAGES x 1 KiB published with confirms (window 100) into a fresh stream
#       (x-queue-type stream) with no consumer, then read from `first` (x-stream-offset) by
#       S10_CONSUMERS consumers (prefetch S10_PREFETCH, manual acks: each ack only returns
#       credit), each of which reads every message: two `warren perf` runs (--keep-queues, then
#       --producers 0 --cmessages CONSUMERS x N), no broker restarted. After each, the stream's
#       size on disk (`du -sb`): Warren's and LavinMQ's whole data directory, RabbitMQ's stream
#       directory (<mnesia>/<node>/stream/__warren-perf-s10_*). The stream is deleted on RabbitMQ
#       before and after. LavinMQ and RabbitMQ are first probed: one message into a stream, read
#       from `first` by two consumers; a broker that gives it to one only has no streams and gets
#       n/a (LavinMQ 1.1.5: it declares a plain queue; streams came in LavinMQ 1.2.0).
#       Table: publish rate, read rate (deliveries/s over all consumers), broker CPU per published
#       and per delivered message, peak RSS of each phase, disk size.
#
# The brokers, run in this order for each scenario (BROKERS chooses which):
#   warren    built (release) into $CARGO_TARGET_DIR (default ~/.cache/warren-target); a fresh
#             process on a free port with a new temporary data directory for every scenario,
#             stopped and its data directory removed after it.
#   lavinmq   the reference LavinMQ 1.1.5 (../shared/tools/reference-lavinmq.sh) on LAVINMQ_PORT,
#             its base directory (data, log, pid) in $RESULTS_DIR/lavinmq: started afresh (new
#             process, empty data directory) for every scenario and stopped after it; its data is
#             removed at the end. It confirms publishes without fsync (LavinMQ syncs before
#             confirming from 2.9 on): its S2, S6 and S9 figures are an upper bound for a broker
#             that syncs, as Warren and RabbitMQ do.
#   rabbitmq  the reference RabbitMQ (../shared/tools/reference-rabbitmq.sh start, or RABBITMQ_URI),
#             shared with other work on this machine: started if need be, never restarted, left
#             running; its peak RSS (VmHWM) is reset at the start of each run.
# Every run is `warren perf ... --broker-pid PID --json` (PID: warren, lavinmq, RabbitMQ's
# beam.smp), then a table per scenario (Markdown). A broker that cannot run a scenario, or does
# not start, gets "n/a" in its column and the reason under the table; the other runs go on.
#
# Environment:
#   BROKERS="warren lavinmq rabbitmq"  the brokers to run (any of them, in any order)
#   DURATION=20          seconds per run (S7 holds its connections for 5 s; S6, S9, S10 are counted)
#   S6_MESSAGES=1000000  S6 backlog size for Warren
#   S6_LAVINMQ_MESSAGES= S6 backlog size for LavinMQ (default: S6_MESSAGES)
#   S6_RABBIT_MESSAGES=  S6 backlog size for RabbitMQ (default: S6_MESSAGES)
#   S9_MESSAGES=1000000  S9 messages for Warren (and its delayed-exchange run)
#   S9_LAVINMQ_MESSAGES= S9 messages for LavinMQ (default: S9_MESSAGES)
#   S9_RABBIT_MESSAGES=  S9 messages for RabbitMQ (default: S9_MESSAGES)
#   S9_TTL_QUEUES=16     S9 wait queues
#   S9_TTL_MS=1000..60000  S9 range of their TTLs (ms)
#   S9_DELAYED=1         0: skip Warren's delayed-exchange reference run in S9
#   S10_MESSAGES=1000000 S10 messages published into the stream, for Warren
#   S10_LAVINMQ_MESSAGES= S10 messages for LavinMQ (default: S10_MESSAGES)
#   S10_RABBIT_MESSAGES= S10 messages for RabbitMQ (default: S10_MESSAGES)
#   S10_CONSUMERS=3      S10 consumers reading the whole stream from `first`
#   S10_PREFETCH=1000    S10 consumers' basic.qos prefetch
#   PERF_THREADS=1       worker threads of the load generator (`warren perf --threads`)
#   LAVINMQ_PORT=5682    LavinMQ's AMQP port (its HTTP API: LAVINMQ_PORT + 10000)
#   RABBITMQ_URI=...     use this RabbitMQ instead of the reference one
#   RABBITMQ_PID=...     its broker process for CPU/RSS figures (default: beam.smp of the reference)
#   RESULTS_DIR=...      where the JSON lines and logs go (default: a new temporary directory)
#   QUIET_WAIT=900       seconds to wait, before each run, for the machine to be quiet: no
#   QUIET_BUSY=15        compiler running and less than QUIET_BUSY % of the CPUs busy (on 2 cores
#                        anything else running distorts every figure); then it measures anyway
#
# To add a scenario: a line in describe() and one in flags_of(), then list it above.
# To add a broker: a name in all_brokers, a case in broker_up, broker_down and data_dir (and in
# stop_keeping_data / start_on_same_data if S6 may restart it), its name in compare_table.py.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
S6_MESSAGES=${S6_MESSAGES:-1000000}
S9_MESSAGES=${S9_MESSAGES:-1000000}
S9_TTL_QUEUES=${S9_TTL_QUEUES:-16}
S9_TTL_MS=${S9_TTL_MS:-1000..60000}
S9_DELAYED=${S9_DELAYED:-1}
S10_MESSAGES=${S10_MESSAGES:-1000000}
S10_CONSUMERS=${S10_CONSUMERS:-3}
S10_PREFETCH=${S10_PREFETCH:-1000}
PERF_THREADS=${PERF_THREADS:-1}
LAVINMQ_PORT=${LAVINMQ_PORT:-5682}
QUIET_WAIT=${QUIET_WAIT:-900}
QUIET_BUSY=${QUIET_BUSY:-15}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
WARREN=$CARGO_TARGET_DIR/release/warren
LAVINMQ_SCRIPT=../shared/tools/reference-lavinmq.sh

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
    S6) echo "backlog of ${S6_MESSAGES} x 1 KiB persistent (no consumer), then drained; Warren and LavinMQ restarted between" ;;
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
    # S9 is counted; the message count is appended by run_counted.
    S9) echo "--queue warren-perf-s9 --ttl-queues $S9_TTL_QUEUES --ttl-ms $S9_TTL_MS --producers 1 --consumers 1 --size 24 --persistent --confirm 100 --auto-ack --pmessages" ;;
    S9-delayed) echo "--queue warren-perf-s9 --delayed-exchange --delay-ms $S9_TTL_MS --producers 1 --consumers 1 --size 24 --persistent --confirm 100 --auto-ack --pmessages" ;;
    # S10 is two counted runs; run_s10 appends the message count (the read run's: all consumers').
    S10-publish) echo "--queue warren-perf-s10 --queue-type stream --producers 1 --consumers 0 --size 1024 --persistent --confirm 100 --keep-queues --pmessages" ;;
    S10-read) echo "--queue warren-perf-s10 --queue-type stream --producers 0 --consumers $S10_CONSUMERS --prefetch $S10_PREFETCH --stream-offset first --size 1024 --persistent --keep-queues --cmessages" ;;
    *) return 1 ;;
  esac
}

# The message count of a counted scenario (S6, S9, S10) for a broker: S6_MESSAGES for Warren,
# S6_LAVINMQ_MESSAGES or S6_RABBIT_MESSAGES if set for the others.
count_for() { # scenario label
  local all=$1_MESSAGES own
  case $2 in
    lavinmq) own=$1_LAVINMQ_MESSAGES ;;
    rabbitmq) own=$1_RABBIT_MESSAGES ;;
    *) own=$all ;;
  esac
  echo "${!own:-${!all}}"
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

all_brokers=(warren lavinmq rabbitmq) # the order of the runs in a scenario and of the table's columns
BROKERS=${BROKERS:-${all_brokers[*]}}
for b in ${BROKERS//,/ }; do
  [[ " ${all_brokers[*]} " == *" $b "* ]] || { echo "unknown broker '$b' in BROKERS (${all_brokers[*]})" >&2; exit 2; }
done
brokers=()
for b in "${all_brokers[@]}"; do [[ " ${BROKERS//,/ } " == *" $b "* ]] && brokers+=("$b"); done
[[ ${#brokers[@]} -gt 0 ]] || { echo "BROKERS names no broker (${all_brokers[*]})" >&2; exit 2; }
uses() { [[ " ${brokers[*]} " == *" $1 "* ]]; }
if uses lavinmq; then
  [[ -x $LAVINMQ_SCRIPT ]] || { echo "no $LAVINMQ_SCRIPT (set BROKERS to leave LavinMQ out)" >&2; exit 1; }
  if (exec 3<>"/dev/tcp/127.0.0.1/$LAVINMQ_PORT") 2>/dev/null; then
    echo "port $LAVINMQ_PORT is taken (a reference LavinMQ running? $LAVINMQ_SCRIPT stop); set LAVINMQ_PORT" >&2
    exit 1
  fi
fi

RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/warren-compare.XXXXXX)}
mkdir -p "$RESULTS_DIR"
echo "results and logs: $RESULTS_DIR (brokers: ${brokers[*]})" >&2

echo "=== building Warren (release)" >&2
scripts/install-deps.sh --build >&2
cargo build --release --locked --bin warren >&2

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port [tries of 0.1 s]
  for _ in $(seq 1 "${2:-100}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
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

# --- Warren on a free port, fresh data directory -------------------------------------------
# A fresh Warren (new process, new data directory) for every scenario, so that memory figures
# and leftovers of one scenario never carry into the next.
warren_pid=
warren_data=
spawn_warren() { # log level: Warren on $warren_port and $warren_data, in the background
  "$WARREN" serve --bind 127.0.0.1 --port "$warren_port" --mgmt-port 0 --prometheus-port 0 --data-dir "$warren_data" --log-level "$1" \
    >>"$RESULTS_DIR/warren.log" 2>&1 &
  warren_pid=$!
}
start_warren() {
  warren_port=$(free_port)
  warren_data=$(mktemp -d /tmp/warren-compare-data.XXXXXX)
  spawn_warren warn
  wait_port "$warren_port" 3000 || { echo "Warren did not start; see $RESULTS_DIR/warren.log" >&2; return 1; }
  WARREN_URI="amqp://guest:guest@127.0.0.1:$warren_port/%2F"
}
# SIGTERM, wait for the exit, keep the data directory.
term_warren() {
  [[ -n $warren_pid ]] || return 0
  kill -TERM "$warren_pid" 2>/dev/null || true
  wait "$warren_pid" 2>/dev/null || true
  warren_pid=
}
stop_warren() {
  term_warren
  [[ -n $warren_data ]] && rm -rf "$warren_data"
  warren_data=
}

# --- LavinMQ: the reference script, on our port and base directory -----------------------------
# The same fresh start as Warren's: the script empties the data directory on start unless
# KEEP_DATA=1 (used only by S6's restart). Its log is rewritten at each start: kept after each stop.
lavin_base=$RESULTS_DIR/lavinmq
lavin_pid=
lavin_script() { # start | stop | status
  PORT=$LAVINMQ_PORT HTTP_PORT=$((LAVINMQ_PORT + 10000)) BASE=$lavin_base "$LAVINMQ_SCRIPT" "$@"
}
start_lavinmq() {
  local out
  out=$(lavin_script start 2>>"$RESULTS_DIR/lavinmq.log") || { echo "LavinMQ did not start; see $RESULTS_DIR/lavinmq.log" >&2; return 1; }
  LAVINMQ_URI=$(sed -n 1p <<<"$out")
  lavin_pid=$(sed -n '$p' <<<"$out") # the script prints the broker's pid last
}
stop_lavinmq() {
  lavin_script stop
  lavin_pid=
  if [[ -f $lavin_base/lavinmq.log ]]; then cat "$lavin_base/lavinmq.log" >>"$RESULTS_DIR/lavinmq.log" && rm "$lavin_base/lavinmq.log"; fi
}

cleanup() {
  stop_warren
  if uses lavinmq; then stop_lavinmq || true; rm -rf "$lavin_base/data"; fi
}
trap cleanup EXIT

# --- RabbitMQ: shared with other work on this machine, kept running -----------------------------
rabbit_uri=
rabbit_pid=
base=
if ! uses rabbitmq; then :
elif [[ -n ${RABBITMQ_URI:-} ]]; then
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
if uses rabbitmq && [[ -z $rabbit_pid ]]; then echo "warning: no RabbitMQ broker pid; its CPU and memory are not measured" >&2; fi

# --- the brokers: up, down, their data, a restart on the same data -----------------------------
# broker_up sets the broker's URI and pid (for --broker-pid; empty: not measured).
cur_uri=
cur_pid=
broker_up() { # label
  case $1 in
    warren) start_warren || return 1; cur_uri=$WARREN_URI; cur_pid=$warren_pid ;;
    lavinmq) start_lavinmq || return 1; cur_uri=$LAVINMQ_URI; cur_pid=$lavin_pid ;;
    rabbitmq) cur_uri=$rabbit_uri; cur_pid=$rabbit_pid ;;
  esac
}
broker_down() { # label
  case $1 in
    warren) stop_warren ;;
    lavinmq) stop_lavinmq ;;
  esac
}
# A shared broker keeps running between scenarios: what a run leaves there must be removed.
shared() { [[ $1 == rabbitmq ]]; }
data_dir() { # label: the broker's data directory (RabbitMQ: its mnesia directory; empty if unknown)
  case $1 in
    warren) echo "$warren_data" ;;
    lavinmq) echo "$lavin_base/data" ;;
    rabbitmq) [[ -n $base ]] && echo "$base/mnesia" ;;
  esac
  return 0
}
data_bytes() { # label [allocated]: its data directory's size in bytes, the files' (or the blocks allocated)
  local dir size=(-b); dir=$(data_dir "$1")
  [[ ${2:-} == allocated ]] && size=(--block-size=1)
  if [[ -n $dir && -d $dir ]]; then du -s "${size[@]}" "$dir" | cut -f1; fi
}
# S6 restarts the brokers that are not shared: SIGTERM, then a start on the same data directory,
# in the background, so that the time until it answers on restart_port can be measured.
stop_keeping_data() { # label
  case $1 in
    warren) term_warren ;;
    lavinmq) stop_lavinmq ;;
  esac
}
lavin_starter=
start_on_same_data() { # label
  case $1 in
    warren) spawn_warren info; restart_port=$warren_port ;;
    lavinmq)
      KEEP_DATA=1 lavin_script start >"$RESULTS_DIR/lavinmq-restart.out" 2>>"$RESULTS_DIR/lavinmq.log" &
      lavin_starter=$!
      restart_port=$LAVINMQ_PORT ;;
  esac
}
started_again() { # label, once it answers: sets cur_pid
  case $1 in
    warren) cur_pid=$warren_pid ;;
    lavinmq) wait "$lavin_starter" || true; lavin_pid=$(cat "$lavin_base/lavinmq.pid"); cur_pid=$lavin_pid ;;
  esac
}
not_available() { # scenario label reason: the table says n/a, with the reason
  echo "=== $1 on $2: n/a: $3" >&2
  echo "$3" >"$RESULTS_DIR/$1-$2.na"
}

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

# One `warren perf` run against the broker that is up, its JSON line into <name>-<label>.json.
run_perf() { # name label perf-flags...
  local name=$1 label=$2; shift 2
  local pid_flag=() busy
  [[ -n $cur_pid ]] && pid_flag=(--broker-pid "$cur_pid")
  busy=$(cpu_busy)
  local cmd=("$WARREN" perf --uri "$cur_uri" "$@" --threads "$PERF_THREADS" --label "$label" "${pid_flag[@]}" --json)
  echo "=== $name on $label (CPU busy before the run: $busy %; load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  echo "    ${cmd[*]}" >&2
  if "${cmd[@]}" >"$RESULTS_DIR/$name-$label.json" 2>"$RESULTS_DIR/$name-$label.log"; then :; else
    echo "    (exit status $?: errors or missing messages; see $RESULTS_DIR/$name-$label.log)" >&2
  fi
  tail -n 20 "$RESULTS_DIR/$name-$label.log" | grep -v '^\[' >&2 || true
  sleep 2 # let the broker settle before the next run
}

# S1-S5, S7, S8 and S9 (whose message count is appended): one run after a quiet wait.
run_one() { # scenario label [messages]
  wait_for_quiet
  # shellcheck disable=SC2046  # the flags are meant to split
  run_perf "$1" "$2" $(flags_of "$1") ${3:+"$3"}
}

# S6: publish a backlog (no consumer), restart the broker unless it is shared (recovery time), drain it.
run_s6() { # label
  local label=$1 n
  n=$(count_for S6 "$label")
  wait_for_quiet
  # shellcheck disable=SC2046
  run_perf S6-publish "$label" $(flags_of S6-publish) "$n"
  echo "$(data_bytes "$label") $(data_bytes "$label" allocated)" >"$RESULTS_DIR/S6-disk-$label.txt"
  if shared "$label"; then
    echo "=== S6 $label: shared, not restarted" >&2
  else
    echo "=== S6 $label: SIGTERM, restart on the same data directory ($(du -sh "$(data_dir "$label")" | cut -f1))" >&2
    stop_keeping_data "$label"
    local t0 log_from=0 secs
    [[ $label == warren ]] && log_from=$(wc -l <"$RESULTS_DIR/warren.log")
    t0=$(date +%s.%N)
    start_on_same_data "$label"
    if ! secs=$(wait_amqp "$restart_port" 300 "$t0"); then
      not_available S6 "$label" "no AMQP 300 s after its restart (publish figures: $RESULTS_DIR/S6-publish-$label.json)"
      return 0
    fi
    started_again "$label"
    echo "    accepting AMQP after $secs s; RSS $(grep VmRSS /proc/"$cur_pid"/status | awk '{print $2}') KiB" >&2
    if [[ $label == warren ]]; then
      tail -n +"$((log_from + 1))" "$RESULTS_DIR/warren.log" | grep 'recovered from the store' | sed 's/\x1b\[[0-9;]*m//g' | tee -a /dev/stderr \
        >"$RESULTS_DIR/S6-recovery-warren.log" || true
    fi
    echo "$secs" >"$RESULTS_DIR/S6-recovery-$label.secs"
    grep VmRSS /proc/"$cur_pid"/status | awk '{print $2}' >"$RESULTS_DIR/S6-recovery-$label.rss_kib"
    sleep 2
  fi
  # shellcheck disable=SC2046
  run_perf S6-drain "$label" $(flags_of S6-drain) "$n"
  if shared "$label"; then # remove the queue
    "$WARREN" perf --uri "$cur_uri" --queue warren-perf-s6 --persistent --producers 0 --consumers 1 --duration 0.5 \
      --quiet >/dev/null 2>&1 || true
    sleep 2
  fi
}

# S10: the stream's size on disk, in bytes (empty if unknown).
stream_bytes() { # label
  if [[ $1 == rabbitmq ]]; then
    local dirs=()
    [[ -n $base ]] && mapfile -t dirs < <(compgen -G "$base/mnesia/*/stream/__warren-perf-s10_*" || true)
    if [[ ${#dirs[@]} -gt 0 ]]; then du -sbc "${dirs[@]}" | tail -n 1 | cut -f1; fi
  else
    data_bytes "$1"
  fi
}
delete_s10_stream() { # queue: a consumer from `next` (reads nothing), then the run deletes the stream
  "$WARREN" perf --uri "$cur_uri" --queue "$1" --queue-type stream --producers 0 --consumers 1 --prefetch 1 \
    --duration 0.5 --quiet >/dev/null 2>&1 || true
}
# Are the broker's streams streams? One message into a new one, two consumers from `first`: both
# must get it (the run deletes the stream). Prints why not (a plain queue gives it to one) and fails.
streams_work() { # label
  local json=$RESULTS_DIR/S10-probe-$1.json received
  "$WARREN" perf --uri "$cur_uri" --queue warren-perf-s10-probe --queue-type stream --producers 1 --consumers 2 \
    --stream-offset first --prefetch 10 --size 16 --confirm 1 --pmessages 1 --cmessages 2 --label "$1" --json \
    >"$json" 2>"$RESULTS_DIR/S10-probe-$1.log" || true
  received=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["received"])' "$json" \
    2>/dev/null || echo '?')
  [[ $received == 2 ]] && return 0
  echo "no streams: into a queue declared with x-queue-type=stream, 1 message read by 2 consumers from \`first\` made $received of the 2 deliveries expected (a plain queue's 1)"
  return 1
}
run_s10() { # label
  local label=$1 n published reason
  n=$(count_for S10 "$label")
  if [[ $label != warren ]] && ! reason=$(streams_work "$label"); then
    not_available S10 "$label" "$reason"
    return 0
  fi
  shared "$label" && delete_s10_stream warren-perf-s10
  wait_for_quiet
  # shellcheck disable=SC2046
  run_perf S10-publish "$label" $(flags_of S10-publish) "$n"
  published=$(stream_bytes "$label")
  echo "    stream on disk after publishing: ${published:-?} bytes" >&2
  wait_for_quiet
  # shellcheck disable=SC2046
  run_perf S10-read "$label" $(flags_of S10-read) "$((n * S10_CONSUMERS))"
  echo "$published $(stream_bytes "$label")" >"$RESULTS_DIR/S10-disk-$label.txt"
  shared "$label" && delete_s10_stream warren-perf-s10
  return 0
}

for s in "${scenarios[@]}"; do
  for b in "${brokers[@]}"; do
    rm -f "$RESULTS_DIR/$s-$b.na"
    if ! broker_up "$b"; then
      not_available "$s" "$b" "$b did not start (see $RESULTS_DIR/$b.log)"
      broker_down "$b"
      continue
    fi
    case $s in
      S6) run_s6 "$b" ;;
      S9) run_one S9 "$b" "$(count_for S9 "$b")" ;;
      S10) run_s10 "$b" ;;
      *) run_one "$s" "$b" ;;
    esac
    broker_down "$b"
  done
  if [[ $s == S9 && $S9_DELAYED != 0 ]] && uses warren; then
    if broker_up warren; then
      wait_for_quiet
      # shellcheck disable=SC2046
      run_perf S9 warren-delayed $(flags_of S9-delayed) "$S9_MESSAGES"
    fi
    broker_down warren
  fi
done

# --- the table --------------------------------------------------------------------------------
title=
for b in "${brokers[@]}"; do
  case $b in warren) b=Warren ;; lavinmq) b=LavinMQ ;; rabbitmq) b=RabbitMQ ;; esac
  title+="${title:+ vs }$b"
done
echo
echo "$title, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, client for all: \`warren perf --threads $PERF_THREADS\` (Warren's load generator)"
python3 bench/compare_table.py --brokers "${brokers[*]}" "$RESULTS_DIR" "${scenarios[@]}"
