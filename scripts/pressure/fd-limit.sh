#!/usr/bin/env bash
# Scenario: more connections than the broker's file-descriptor limit. Warren runs under
# `ulimit -n FD_LIMIT` (default 1024) and CONNECTIONS (default 1500) clients connect at once:
# failed accepts must be logged once (not one line per attempt) without a busy loop, existing
# connections keep working, a fresh one is served once others close, and no descriptor leaks.
#   FD_LIMIT (default 1024), CONNECTIONS (default 1500), HOLD seconds at the limit (default 20)
source "$(dirname "$0")/lib.sh"
fd_limit=${FD_LIMIT:-1024}
connections=${CONNECTIONS:-1500}
need_python
ulimit -n $((connections + 512))
start_broker --fd-limit "$fd_limit" --log-level warn
say "warren pid $broker_pid on port $port under ulimit -n $fd_limit; $connections connections"
PYTHONPATH=$here "$py" "$here/fd_limit.py" 127.0.0.1 "$port" "$broker_pid" "$broker_log" \
  --connections "$connections" --hold "${HOLD:-20}"
broker_alive
say "the broker's log lines about accepting:"
grep -i accept "$broker_log" | head -5 >&2 || true
