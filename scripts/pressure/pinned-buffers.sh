#!/usr/bin/env bash
# Scenario: small transient messages kept in one queue while the messages published between
# them go to a consumer at once: the broker's memory per kept message stays near what the
# transient budget counts for it (the bodies do not pin the read buffers they arrived in).
#   KEPT messages kept (default 100000), EVERY: one in EVERY published is kept (default 100)
source "$(dirname "$0")/lib.sh"
need_python
start_broker --log-level warn
say "warren pid $broker_pid on port $port"
PYTHONPATH=$here "$py" "$here/pinned_buffers.py" 127.0.0.1 "$port" "$broker_pid" \
  --kept "${KEPT:-100000}" --every "${EVERY:-100}"
broker_alive
