#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this):
# install what is missing, format check, clippy (-D warnings), the spec cross-check, and every
# Rust test (unit, property, integration, the pamqp differential test), then the pika and
# amqplib interop suites against a Warren started on a free port.
#
# CARGO_TARGET_DIR defaults to a cache outside the checkout: RocksDB takes ~10 minutes to build
# from source, and a fresh clone should not pay that again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
export WARREN_PYTHON=${WARREN_PYTHON:-$PWD/interop-tests/.venv/bin/python}
export WARREN_REQUIRE_DIFFERENTIAL=1

step() { printf '\n=== %s\n' "$*"; }

step "install dependencies"
scripts/install-deps.sh --test

step "cargo fmt --check"
cargo fmt --all -- --check

step "spec cross-check against the AMQP XML"
python3 spec/check_against_xml.py

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --all-targets --locked

step "interop tests (pika, amqplib) against Warren"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
"$CARGO_TARGET_DIR/debug/warren" --bind 127.0.0.1 --port "$port" --data-dir "$data/data" --log-level warn \
  >"$data/warren.log" 2>&1 &
warren_pid=$!
trap 'kill "$warren_pid" 2>/dev/null; wait "$warren_pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
if ! AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2F" interop-tests/run.sh; then
  echo "--- warren log (last 50 lines)"
  tail -50 "$data/warren.log"
  exit 1
fi
