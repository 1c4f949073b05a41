#!/usr/bin/env bash
# Scenario: 1,000 consumers that stop reading their sockets (no-ack) while `warren perf` publishes
# into their queue with one healthy consumer: the broker's memory stays bounded by its outbound
# limits (1 MiB per connection), the healthy consumer keeps being served.
#   CONSUMERS (default 1000), FILL seconds of publishing until they are full (default 30), then
#   DURATION seconds measured (default 30), SIZE octets (default 4096)
source "$(dirname "$0")/lib.sh"
consumers=${CONSUMERS:-1000}
need_python
ulimit -n $((consumers + 512))
start_broker --log-level warn
say "warren pid $broker_pid on port $port; $consumers stalled consumers"
PYTHONPATH=$here "$py" "$here/stalled_consumers.py" 127.0.0.1 "$port" "$broker_pid" "$(warren_bin)" \
  --consumers "$consumers" --fill "${FILL:-30}" --duration "${DURATION:-30}" --size "${SIZE:-4096}"
broker_alive
