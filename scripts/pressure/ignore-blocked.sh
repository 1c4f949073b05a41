#!/usr/bin/env bash
# Scenario: a publisher that ignores connection.blocked. Warren runs with a low memory watermark
# (WATERMARK, default 128MiB); one raw-socket publisher floods a queue nobody consumes and keeps
# writing after `connection.blocked`: the broker stops reading its socket, its memory stays near
# the watermark, it keeps serving other connections, nothing crashes; after a purge the alarm
# clears and the publisher is unblocked.
#   WATERMARK (default 128MiB), DURATION seconds of flooding (default 60), SIZE octets (default 16384)
source "$(dirname "$0")/lib.sh"
need_python
watermark=${WATERMARK:-128MiB}
start_broker --log-level warn --memory-high-watermark "$watermark"
say "warren pid $broker_pid on port $port, --memory-high-watermark $watermark"
PYTHONPATH=$here "$py" "$here/ignore_blocked.py" 127.0.0.1 "$port" "$broker_pid" \
  --duration "${DURATION:-60}" --size "${SIZE:-16384}"
broker_alive
say "the broker's alarm log lines:"
grep -i alarm "$broker_log" | head -6 >&2 || true
