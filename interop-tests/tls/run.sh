#!/usr/bin/env bash
# AMQP over TLS with real clients: pika (test_tls.py, pytest) and amqplib (tls.test.js,
# node --test) against a broker whose AMQPS listener verifies client certificates
# (verify_peer + fail_if_no_peer_cert), speaks TLS 1.2 and 1.3 and offers SASL EXTERNAL
# (user = the certificate's RFC 2253 subject). The certificates are made fresh by make-pki.sh.
#
# Usage: interop-tests/tls/run.sh [warren|rabbitmq] [all|python|node]    (default: warren all)
#   warren    starts its own Warren (free ports, a temporary data directory, TLS flags as below)
#             and stops it afterwards. WARREN_BIN: the binary (default
#             $CARGO_TARGET_DIR/debug/warren, CARGO_TARGET_DIR defaulting to ~/.cache/warren-target).
#   rabbitmq  the reference RabbitMQ 3.10 configured the same way, through
#             reference-rabbitmq-tls.sh (PORT, default 5690: plain AMQP; PORT+1 AMQPS; PORT+10000
#             management). Started fresh and stopped afterwards, or used as it is (and left
#             running) when it runs already.
#   PYTEST_ARGS  extra pytest arguments (e.g. "-k external -x")
#
# Uses interop-tests/.venv and interop-tests/node/node_modules (made by interop-tests/run.sh
# setup, which this runs). Every phase runs even if an earlier one fails; the exit status is
# non-zero if any failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
interop=$(dirname "$here")
broker=${1:-warren}
which=${2:-all}
case $broker in
  warren | rabbitmq) ;;
  -h | --help)
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) echo "usage: $0 [warren|rabbitmq] [all|python|node]" >&2; exit 2 ;;
esac
case $which in
  all | python | node) ;;
  *) echo "usage: $0 [warren|rabbitmq] [all|python|node]" >&2; exit 2 ;;
esac

limit() {
  if command -v timeout >/dev/null 2>&1; then timeout --kill-after=15 600 "$@"; else "$@"; fi
}

"$interop/run.sh" setup >/dev/null || { echo "tls: interop-tests setup FAILED" >&2; exit 1; }

work=$(mktemp -d)
warren_pid=
stop_rabbitmq=false
cleanup() {
  if [[ -n $warren_pid ]]; then
    kill -TERM "$warren_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$warren_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$warren_pid" 2>/dev/null
    wait "$warren_pid" 2>/dev/null
  fi
  $stop_rabbitmq && "$here/reference-rabbitmq-tls.sh" stop >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The address a started Warren logged for a listener ("<what> addr=127.0.0.1:PORT").
logged_addr() {
  sed 's/\x1b\[[0-9;]*m//g' "$work/warren.log" | sed -n "s/.*$1 addr=\\([0-9.:]*\\).*/\\1/p" | head -1
}

start_warren() {
  local bin=${WARREN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}/debug/warren}
  [[ -x $bin ]] || { echo "tls: no Warren binary at $bin (cargo build, or set WARREN_BIN)" >&2; return 1; }
  "$here/make-pki.sh" "$work/pki" || return 1
  # The TLS set-up of reference-rabbitmq-tls.sh; every port 0 (free), read back from the log.
  NO_COLOR=1 "$bin" --bind 127.0.0.1 --port 0 --mgmt-bind 127.0.0.1 --mgmt-port 0 --prometheus-port 0 \
    --tls-port 0 --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" \
    --tls-ca "$work/pki/ca.pem" --tls-verify-peer --tls-fail-if-no-peer-cert \
    --tls-cert-login-from distinguished_name \
    --data-dir "$work/data" --log-level info </dev/null >"$work/warren.log" 2>&1 &
  warren_pid=$!
  local tls= plain= mgmt=
  for _ in $(seq 1 300); do
    tls=$(logged_addr 'listening for AMQP 0-9-1 over TLS')
    plain=$(logged_addr 'listening for AMQP 0-9-1')
    mgmt=$(logged_addr 'management HTTP API listening')
    [[ -n $tls && -n $plain && -n $mgmt ]] && break
    kill -0 "$warren_pid" 2>/dev/null || { echo "tls: warren exited:" >&2; tail -20 "$work/warren.log" >&2; return 1; }
    sleep 0.1
  done
  [[ -n $tls && -n $mgmt ]] || { echo "tls: warren did not log its listeners in 30 s" >&2; return 1; }
  export AMQPS_URL="amqps://guest:guest@$tls/%2F" AMQP_URL="amqp://guest:guest@$plain/%2F"
  export MGMT_URL="http://$mgmt" TLS_PKI="$work/pki"
}

start_rabbitmq() {
  local ref=$here/reference-rabbitmq-tls.sh urls
  if [[ $("$ref" status) == running* ]]; then
    echo "tls: using the running reference RabbitMQ (left running)"
  else
    "$ref" start --fresh >/dev/null || return 1
    stop_rabbitmq=true
  fi
  mapfile -t urls < <("$ref" url)
  export AMQPS_URL=${urls[0]} MGMT_URL=${urls[1]} AMQP_URL=${urls[2]} TLS_PKI=$("$ref" pki)
}

if [[ $broker == warren ]]; then start_warren; else start_rabbitmq; fi || {
  echo "tls: cannot start $broker" >&2
  exit 1
}
echo "tls: $broker AMQPS_URL=$AMQPS_URL MGMT_URL=$MGMT_URL TLS_PKI=$TLS_PKI"

py_rc=skip node_rc=skip
if [[ $which == all || $which == python ]]; then
  echo
  echo "=== tls: python (pika) ==="
  # shellcheck disable=SC2086
  (cd "$here" && limit "$interop/.venv/bin/python" -m pytest ${PYTEST_ARGS:-} </dev/null)
  py_rc=$?
fi
if [[ $which == all || $which == node ]]; then
  echo
  echo "=== tls: node (amqplib) ==="
  force=
  [[ $(node --help 2>/dev/null) == *--test-force-exit* ]] && force=--test-force-exit
  (cd "$here" && limit node --test $force --test-reporter=spec tls.test.js </dev/null)
  node_rc=$?
fi

echo
status() { if [[ $2 == skip ]]; then echo "$1 not run"; elif [[ $2 -eq 0 ]]; then echo "$1 ok"; else echo "$1 FAILED (exit $2)"; fi; }
echo "tls ($broker): $(status python "$py_rc"), $(status node "$node_rc")"
for rc in "$py_rc" "$node_rc"; do
  [[ $rc == skip || $rc -eq 0 ]] && continue
  if [[ $broker == warren ]]; then
    echo "--- warren log (last 40 lines)"
    sed 's/\x1b\[[0-9;]*m//g' "$work/warren.log" | tail -40
  fi
  exit 1
done
