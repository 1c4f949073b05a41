# Shared by the pressure scenarios (sourced, not run): the Warren binary, the Python venv, a
# broker on a free loopback port, and clean-up.
#
#   WARREN_BIN           the broker to test (default: a release build, made here if needed with
#                        CARGO_TARGET_DIR=$PRESSURE_TARGET_DIR, default ~/.cache/warren-release)
#   PRESSURE_RESULTS     file each scenario appends its `RESULT` line to (run.sh sets it)
#   PRESSURE_WORK        scratch directory (default: a new one under /tmp, removed at exit unless
#                        PRESSURE_KEEP=1)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$repo/scripts/pressure
venv=$repo/interop-tests/.venv
py=$venv/bin/python

say() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# The release binary: built once (RocksDB takes minutes from nothing; the cache makes it seconds).
warren_bin() {
  if [[ -n ${WARREN_BIN:-} ]]; then
    echo "$WARREN_BIN"
    return
  fi
  local target=${PRESSURE_TARGET_DIR:-$HOME/.cache/warren-release}
  say "building the release binary (CARGO_TARGET_DIR=$target)"
  (cd "$repo" && CARGO_TARGET_DIR=$target nice -n 10 cargo build --release --locked -q) >&2
  echo "$target/release/warren"
}

# pika in interop-tests/.venv (the interop tests' venv; created here if missing).
need_python() {
  if [[ ! -x $py ]]; then
    say "creating $venv"
    python3 -m venv "$venv" 2>/dev/null || {
      apt-get install -y -q python3-venv >/dev/null && python3 -m venv "$venv"
    }
  fi
  "$py" -c 'import pika' 2>/dev/null || "$py" -m pip install --disable-pip-version-check -q "pika==1.3.2" </dev/null
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=${PRESSURE_WORK:-$(mktemp -d /tmp/warren-pressure.XXXXXX)}
mkdir -p "$work"
broker_pid=""
cleanup() {
  if [[ -n $broker_pid ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  [[ ${PRESSURE_KEEP:-0} == 1 || -n ${PRESSURE_WORK:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# start_broker [--fd-limit N] [--preload LIB] [warren flags...]: a Warren on a free loopback
# port with a new data directory under $work; sets $port, $broker_pid, $broker_log. The broker
# is the direct child (exec), so $broker_pid is Warren's own pid (for /proc and kill -9).
start_broker() {
  local fd_limit="" preload=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --fd-limit) fd_limit=$2; shift 2 ;;
      --preload) preload=$2; shift 2 ;;
      *) break ;;
    esac
  done
  local bin
  bin=$(warren_bin)
  port=$(free_port)
  broker_log=$work/warren-$port.log
  (
    [[ -n $fd_limit ]] && ulimit -n "$fd_limit"
    [[ -n $preload ]] && export LD_PRELOAD=$preload
    exec "$bin" --bind 127.0.0.1 --port "$port" --mgmt-bind 127.0.0.1 --mgmt-port 0 \
      --prometheus-bind 127.0.0.1 --prometheus-port 0 --data-dir "$work/data-$port" "$@" \
      </dev/null >>"$broker_log" 2>&1
  ) &
  broker_pid=$!
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$broker_pid" 2>/dev/null || { say "warren exited:"; cat "$broker_log" >&2; return 1; }
    sleep 0.1
  done
  say "warren does not accept connections on $port after 30 s"
  return 1
}

stop_broker() {
  [[ -n $broker_pid ]] || return 0
  kill -TERM "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
}

# Fails (exit status 1, with the reason) unless the broker process still runs.
broker_alive() {
  if ! kill -0 "$broker_pid" 2>/dev/null; then
    say "FAIL: warren is gone; its log:"
    tail -50 "$broker_log" >&2
    return 1
  fi
}
