#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ with cargo-fuzz (libFuzzer) and runs each for a while:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target defaults to $WARREN_FUZZ_SECONDS, else 60; 0 skips fuzzing altogether.
# TARGETs default to all of them (frame_decoder, connection). scripts/test.sh runs this.
#
# - cargo-fuzz is installed (`cargo install cargo-fuzz --locked`) when missing. It passes
#   nightly-only flags (-Z...) to rustc; RUSTC_BOOTSTRAP=1 makes a stable toolchain accept them.
# - The instrumented build has its own target directory, $CARGO_TARGET_DIR/fuzz (CARGO_TARGET_DIR
#   defaulting to ~/.cache/warren-target as in test.sh; WARREN_FUZZ_TARGET_DIR overrides it),
#   kept between runs: after the first build only what changed is rebuilt.
# - RocksDB is not compiled again: its C++ does not take Rust's instrumentation anyway, so the
#   fuzz build links the librocksdb.a of the normal debug build (ROCKSDB_LIB_DIR, ROCKSDB_STATIC),
#   which is built first if missing. That saves the 10-15 minutes of compiling it.
# - No sanitizer (--sanitizer none): Warren is safe Rust, so what the fuzzer looks for is panics,
#   overflows (overflow checks and debug assertions are on), hangs and broken replies; ASan
#   would slow every input down for the few unsafe lines (libc calls).
# - Each run starts from the small seed corpora under fuzz/corpus/TARGET (read only), as CI's do:
#   what the fuzzer adds goes to a temporary directory, so that every run spends its time
#   exploring rather than replaying an ever larger corpus. WARREN_FUZZ_CORPUS=DIR keeps it in
#   DIR/TARGET between runs instead (longer sessions). libFuzzer's output goes to
#   $CARGO_TARGET_DIR/fuzz/TARGET.log (its tail is printed on a failure). A crash, a panic or a
#   hang leaves its input in fuzz/artifacts/TARGET and fails the script; running the target's
#   binary on that file replays it (WARREN_FUZZ_VERBOSE=1 prints every frame: README, Fuzzing).
set -euo pipefail
# Directories named relative to where the script is started from.
for var in WARREN_FUZZ_CORPUS WARREN_FUZZ_TARGET_DIR CARGO_TARGET_DIR; do
  [[ -z ${!var:-} ]] || printf -v "$var" '%s' "$(realpath -m -- "${!var}")"
done
cd "$(dirname "$0")/.."

seconds=${1:-${WARREN_FUZZ_SECONDS:-60}}
[[ $# -gt 0 ]] && shift
targets=("$@")
((${#targets[@]})) || targets=(frame_decoder connection)
if [[ $seconds == 0 ]]; then
  echo "fuzzing skipped (0 seconds)"
  exit 0
fi

main_target=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
export CARGO_TARGET_DIR=${WARREN_FUZZ_TARGET_DIR:-$main_target/fuzz}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz ..." >&2
  cargo install cargo-fuzz --locked --version '^0.13' >&2
fi

# The librocksdb.a of the locked librocksdb-sys version in the normal build's target directory.
# fuzz/ has a lock file of its own (a workspace of its own); its bindings must match that library.
locked() { grep -A1 "^name = \"$1\"$" "$2" | sed -n 's/^version = "\(.*\)"$/\1/p'; }
rocksdb_version=$(locked librocksdb-sys Cargo.lock)
if [[ $(locked librocksdb-sys fuzz/Cargo.lock) != "$rocksdb_version" ]]; then
  echo "fuzz/Cargo.lock locks librocksdb-sys $(locked librocksdb-sys fuzz/Cargo.lock), Cargo.lock $rocksdb_version:" >&2
  echo "update it: (cd fuzz && cargo update -p librocksdb-sys --precise $rocksdb_version)" >&2
  exit 1
fi
find_rocksdb() {
  local dir best=""
  for dir in "$main_target"/debug/build/librocksdb-sys-*; do
    [[ -f $dir/out/librocksdb.a ]] || continue
    grep -qF "librocksdb-sys-$rocksdb_version" "$dir/output" 2>/dev/null || continue
    [[ -z $best || $dir/out/librocksdb.a -nt $best/librocksdb.a ]] && best=$dir/out
  done
  echo "$best"
}
rocksdb=$(find_rocksdb)
if [[ -z $rocksdb ]]; then
  echo "no librocksdb.a $rocksdb_version in $main_target yet: building the broker first ..." >&2
  CARGO_TARGET_DIR=$main_target cargo build --locked --lib
  rocksdb=$(find_rocksdb)
  [[ -n $rocksdb ]] || { echo "still no librocksdb.a under $main_target/debug/build" >&2; exit 1; }
fi
export ROCKSDB_LIB_DIR=$rocksdb ROCKSDB_STATIC=1

# The broker under the connection target keeps its data here, and the corpus of this run goes
# here too unless WARREN_FUZZ_CORPUS says otherwise; removed when the script ends.
WARREN_FUZZ_DATA=$(mktemp -d)
export WARREN_FUZZ_DATA
trap 'rm -rf "$WARREN_FUZZ_DATA"' EXIT

fuzz_args=(--sanitizer none --features broker)
cd fuzz
start=$SECONDS
cargo fuzz build "${fuzz_args[@]}"
echo "fuzz build: $((SECONDS - start)) s"
for target in "${targets[@]}"; do
  corpus=${WARREN_FUZZ_CORPUS:-$WARREN_FUZZ_DATA/corpus}/$target
  log=$CARGO_TARGET_DIR/$target.log
  mkdir -p "$corpus" "corpus/$target"
  echo "--- fuzzing $target for $seconds s (libFuzzer's output: $log)"
  if ! cargo fuzz run "${fuzz_args[@]}" "$target" "$corpus" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
    tail -80 "$log"
    echo "fuzzing $target found a failure: its input is in fuzz/artifacts/$target/ (see README, Fuzzing)" >&2
    exit 1
  fi
  grep -aE '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log"
done
