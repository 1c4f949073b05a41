#!/usr/bin/env bash
# Scenario: ROUNDS (default 100) kill -9 rounds under confirmed load, 0 confirmed messages lost.
# Runs the long variant of tests/crash_recovery.rs (ignored by default) against the release
# binary: each round starts Warren on the same data directory, publishes persistent messages with
# confirms (a window of 50) to a durable queue, and kills it with SIGKILL after 100-900 ms; then
# a last start checks that every confirmed message is there, in order, byte for byte.
#   ROUNDS (default 100); CARGO_TARGET_DIR for the test build (default ~/.cache/warren-target)
source "$(dirname "$0")/lib.sh"
rounds=${ROUNDS:-100}
bin=$(warren_bin)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
say "building the test (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$repo" && nice -n 10 cargo test --locked -q --test crash_recovery --no-run) >&2
say "$rounds kill -9 rounds against $bin${KILL9_LABEL:+ ($KILL9_LABEL)}"
start=$(date +%s)
status=0
(cd "$repo" && WARREN_BIN=$bin WARREN_CRASH_ROUNDS=$rounds cargo test --locked -q --test crash_recovery \
  -- --ignored --exact every_confirmed_message_survives_many_kill_9_rounds --nocapture) 2>&1 | tee "$work/kill9.out" || status=$?
seconds=$(($(date +%s) - start))
line=$(grep -o 'kill-9 rounds=.*' "$work/kill9.out" | tail -1 || true)
name=${KILL9_NAME:-kill9}
if [[ $status -eq 0 && -n $line ]]; then
  result="$name ${line#kill-9 } seconds=$seconds verdict=PASS"
else
  lost=$(grep -o '[0-9]* of [0-9]* confirmed messages lost' "$work/kill9.out" | head -1 || true)
  result="$name rounds=$rounds ${lost:+lost=\"$lost\" }seconds=$seconds verdict=FAIL"
fi
echo "RESULT $result"
[[ -n ${PRESSURE_RESULTS:-} ]] && echo "$result" >>"$PRESSURE_RESULTS"
exit $status
