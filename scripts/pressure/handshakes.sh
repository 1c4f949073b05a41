#!/usr/bin/env bash
# Scenario: 10,000 concurrent connections doing the AMQP handshake at once (raw asyncio sockets,
# one Python process), held open; a fresh connection still works; all close; no fd leak.
#   CONNECTIONS (default 10000)
source "$(dirname "$0")/lib.sh"
connections=${CONNECTIONS:-10000}
need_python
# Both ends need a descriptor per connection (plus the broker's own files).
want=$((connections + 512))
if (($(ulimit -Hn) < want)); then
  say "the hard fd limit ($(ulimit -Hn)) is below $want: cannot run $connections connections"
  exit 1
fi
ulimit -n "$want"
start_broker --log-level warn
say "warren pid $broker_pid on port $port; $connections connections"
PYTHONPATH=$here "$py" "$here/handshakes.py" 127.0.0.1 "$port" "$broker_pid" --connections "$connections"
broker_alive
