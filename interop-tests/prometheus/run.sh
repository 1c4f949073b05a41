#!/usr/bin/env bash
# The Prometheus endpoint interop suite (pytest): promtool check metrics on the live output,
# promtool check/test rules on monitoring/alerts.yml, the stock RabbitMQ-Overview dashboard's
# metrics after traffic, per-object and detailed series. Passes against RabbitMQ 3.10.8 too
# (Warren-only tests skip there).
#
# Usage: interop-tests/prometheus/run.sh
#   PROM_URL   the metrics listener (default http://127.0.0.1:15692, Warren's default port).
#              Reference RabbitMQ: PROM_URL=http://127.0.0.1:15681
#   AMQP_URL   the same broker's AMQP (default amqp://guest:guest@127.0.0.1:5672/%2F;
#              reference: amqp://guest:guest@127.0.0.1:5680/%2F)
#   PROMTOOL   promtool (default: on PATH; Debian's `prometheus` package installs it)
#   PYTEST_ARGS  extra pytest arguments
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case ${1:-} in
  -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
export PROM_URL=${PROM_URL:-http://127.0.0.1:15692}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
echo "prometheus interop: PROM_URL=$PROM_URL AMQP_URL=$AMQP_URL"
python=${WARREN_PYTHON:-$here/../.venv/bin/python}
if [[ ! -x $python ]]; then
  "$here/../run.sh" setup || { echo "prometheus interop: python setup FAILED"; exit 1; }
fi
# shellcheck disable=SC2086
(cd "$here" && timeout --kill-after=15 600 "$python" -m pytest ${PYTEST_ARGS:-} </dev/null)
