#!/bin/sh
# The image's entrypoint: runs `warren` (or whatever command is given) as PID 1 via exec, so
# SIGTERM from `docker stop` reaches the broker, which closes its connections and syncs the store.
#  - A definitions file mounted at /etc/warren/definitions.json (RabbitMQ's format) is imported
#    at every start, unless WARREN_LOAD_DEFINITIONS names another one.
#  - Arguments that start with `-` are flags for `warren`: `docker run IMAGE --log-level debug`.
set -e
if [ -z "${WARREN_LOAD_DEFINITIONS:-}" ] && [ -f /etc/warren/definitions.json ]; then
  export WARREN_LOAD_DEFINITIONS=/etc/warren/definitions.json
fi
case "${1:-}" in
  -*) set -- warren "$@" ;;
esac
exec "$@"
