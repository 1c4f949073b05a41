#!/usr/bin/env bash
# Run the AMQP 0-9-1 client interop suites (pika/pytest and amqplib/node:test).
#
# Usage: interop-tests/run.sh [all|python|node|mgmt|setup]      (default: all)
#   setup: only create/update the venv and node_modules (scripts/install-deps.sh uses it)
#   mgmt:  the management HTTP API suite (pytest + requests + the real rabbitmqadmin) in
#          interop-tests/mgmt; not part of "all" yet
#
#   AMQP_URL   broker to test (default amqp://guest:guest@127.0.0.1:5672/%2F, i.e. Warren).
#              Reference RabbitMQ: AMQP_URL=amqp://guest:guest@127.0.0.1:5680/%2F
#   MGMT_URL   (mgmt) the management listener, without /api (default http://127.0.0.1:15672;
#              guest:guest unless credentials are given in it).
#              Reference RabbitMQ: MGMT_URL=http://127.0.0.1:15680
#   RABBITMQADMIN  (mgmt) the rabbitmqadmin script (default: rabbitmqadmin on PATH, from Debian's
#              rabbitmq-server package); without it the rabbitmqadmin tests are skipped
#   PYTEST_ARGS       extra arguments for pytest (e.g. "-k topics -x")
#   INTEROP_TEST_TIMEOUT  per-test-phase limit in seconds for the Python suite (default 60;
#              INTEROP_RESTART_TEST_TIMEOUT, default 300, for its restart tests)
#   BROKER_RESTART_CMD    shell command that restarts the broker and returns once it accepts
#              connections again; without it the restart (durability) tests are skipped.
#              Reference RabbitMQ: BROKER_RESTART_CMD="/work/shared/tools/reference-rabbitmq.sh restart"
#
# Creates interop-tests/.venv (python3 -m venv; pip install -r requirements.txt) and
# interop-tests/node/node_modules (npm ci) when missing or out of date, then runs the
# selected suites, then their restart tests (python/restart, node/restart) one at a time,
# since a restart breaks every open connection. Every phase runs even if an earlier one
# fails; the exit status is non-zero if any failed. Needs no stdin (CI-safe).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
which=${1:-all}
case $which in
  all | python | node | mgmt | setup) ;;
  -h | --help)
    sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [all|python|node|mgmt|setup]" >&2
    exit 2
    ;;
esac

export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
echo "interop-tests: AMQP_URL=$AMQP_URL"

# Bound a whole suite so a hung broker cannot stall CI forever.
limit() {
  if command -v timeout >/dev/null 2>&1; then timeout --kill-after=15 600 "$@"; else "$@"; fi
}

hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

setup_python() {
  local venv=$here/.venv stamp=$here/.venv/.requirements.sha256 want
  want=$(hash_of "$here/requirements.txt")
  if [[ ! -x $venv/bin/python ]]; then
    echo "interop-tests: creating $venv"
    python3 -m venv "$venv" || return 1
  fi
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "interop-tests: pip install -r requirements.txt"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt" </dev/null || return 1
    echo "$want" >"$stamp"
  fi
}

setup_node() {
  local dir=$here/node stamp=$here/node/node_modules/.interop-lock.sha256 want
  want=$(hash_of "$dir/package.json" "$dir/package-lock.json")
  if [[ ! -d $dir/node_modules || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "interop-tests: npm ci"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null) || return 1
    echo "$want" >"$stamp"
  fi
}

run_python() {
  echo
  echo "=== python (pika) ==="
  setup_python || { echo "interop-tests: python setup FAILED"; return 1; }
  # shellcheck disable=SC2086
  (cd "$here/python" && limit "$here/.venv/bin/python" -m pytest ${PYTEST_ARGS:-} </dev/null)
}

# The management HTTP API suite. Its conftest stops the run at once when MGMT_URL or AMQP_URL
# does not answer.
run_mgmt() {
  echo
  echo "=== mgmt (HTTP API, rabbitmqadmin) ==="
  export MGMT_URL=${MGMT_URL:-http://127.0.0.1:15672}
  echo "interop-tests: MGMT_URL=$MGMT_URL"
  setup_python || { echo "interop-tests: python setup FAILED"; return 1; }
  # shellcheck disable=SC2086
  (cd "$here/mgmt" && limit "$here/.venv/bin/python" -m pytest ${PYTEST_ARGS:-} </dev/null)
}

# Fail fast (instead of one timeout per test) when no broker answers.
node_broker_check() {
  (cd "$here/node" && node -e '
    require("amqplib").connect(process.env.AMQP_URL, { timeout: 10000 })
      .then((c) => c.close())
      .catch((e) => { console.error(`cannot open an AMQP connection to ${process.env.AMQP_URL}: ${e.message}`); process.exit(1); });
  ' </dev/null)
}

run_node() {
  echo
  echo "=== node (amqplib) ==="
  setup_node || { echo "interop-tests: node setup FAILED"; return 1; }
  node_broker_check || return 1
  # --test-force-exit (node >= 20.14): a test that timed out must not keep its file's process alive.
  local force=
  [[ $(node --help 2>/dev/null) == *--test-force-exit* ]] && force=--test-force-exit
  (cd "$here/node" && limit node --test $force --test-reporter=spec test/*.test.js </dev/null)
}

# The restart tests: after the normal suites, serially (a restart breaks every open connection).
restart_note() {
  [[ -n ${BROKER_RESTART_CMD:-} ]] && return
  echo "interop-tests: BROKER_RESTART_CMD is not set, so the restart tests are skipped"
}

run_python_restart() {
  echo
  echo "=== python (pika) restart tests ==="
  restart_note
  setup_python || { echo "interop-tests: python setup FAILED"; return 1; }
  local rc
  # shellcheck disable=SC2086
  (cd "$here/python" && INTEROP_TEST_TIMEOUT=${INTEROP_RESTART_TEST_TIMEOUT:-300} \
    limit "$here/.venv/bin/python" -m pytest restart ${PYTEST_ARGS:-} </dev/null)
  rc=$?
  ((rc == 5)) && rc=0 # PYTEST_ARGS (-k ...) deselected all of them
  return $rc
}

run_node_restart() {
  echo
  echo "=== node (amqplib) restart tests ==="
  restart_note
  setup_node || { echo "interop-tests: node setup FAILED"; return 1; }
  node_broker_check || return 1
  local help force= rc=0 f
  help=$(node --help 2>/dev/null)
  [[ $help == *--test-force-exit* ]] && force=--test-force-exit
  if [[ $help == *--test-concurrency* ]]; then
    (cd "$here/node" && limit node --test --test-concurrency=1 $force --test-reporter=spec restart/*.test.js </dev/null)
  else # node < 20.10: one file at a time
    for f in "$here"/node/restart/*.test.js; do
      (cd "$here/node" && limit node --test $force --test-reporter=spec "$f" </dev/null) || rc=1
    done
    return $rc
  fi
}

if [[ $which == setup ]]; then
  setup_python && setup_node
  exit
fi

if [[ $which == mgmt ]]; then
  run_mgmt
  rc=$?
  echo
  if ((rc == 0)); then echo "interop-tests: mgmt ok"; else echo "interop-tests: mgmt FAILED (exit $rc)"; fi
  exit $rc
fi

py_rc=skip node_rc=skip py_restart_rc=skip node_restart_rc=skip
if [[ $which == all || $which == python ]]; then run_python; py_rc=$?; fi
if [[ $which == all || $which == node ]]; then run_node; node_rc=$?; fi
if [[ $which == all || $which == python ]]; then run_python_restart; py_restart_rc=$?; fi
if [[ $which == all || $which == node ]]; then run_node_restart; node_restart_rc=$?; fi

echo
status() { if [[ $2 == skip ]]; then echo "$1 not run"; elif [[ $2 -eq 0 ]]; then echo "$1 ok"; else echo "$1 FAILED (exit $2)"; fi; }
summary="$(status python "$py_rc"), $(status node "$node_rc"), $(status "python restart" "$py_restart_rc"), $(status "node restart" "$node_restart_rc")"
[[ -z ${BROKER_RESTART_CMD:-} ]] && summary+=" (restart tests skipped: BROKER_RESTART_CMD not set)"
echo "interop-tests: $summary"
for rc in "$py_rc" "$node_rc" "$py_restart_rc" "$node_restart_rc"; do
  [[ $rc == skip || $rc -eq 0 ]] || exit 1
done
