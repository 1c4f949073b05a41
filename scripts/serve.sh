#!/usr/bin/env bash
# Builds (release) and runs the broker with its embedded defaults: AMQP on 0.0.0.0:5672, data in
# ./data, guest/guest from loopback. Any arguments go to `warren` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
scripts/install-deps.sh --build
cargo build --release --locked --bin warren
exec "$CARGO_TARGET_DIR/release/warren" "$@"
