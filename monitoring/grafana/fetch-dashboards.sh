#!/bin/sh
# Downloads the stock RabbitMQ-Overview Grafana dashboard (grafana.com dashboard 10991, published
# by the RabbitMQ team) into DIR, for Grafana's file provisioning. It is not part of this
# repository (it is RabbitMQ's work, under its own licence): it is fetched at set-up time, by the
# compose file's `grafana-dashboards` service into a volume, or by hand:
#
#   monitoring/grafana/fetch-dashboards.sh DIR     # DIR defaults to monitoring/grafana/rabbitmq-dashboards
#
# The dashboard names its datasource through the ${DS_PROMETHEUS} input of grafana.com's export;
# that is rewritten to "prometheus", the datasource the stack provisions. A failed download
# prints a warning and exits 0: Grafana then starts with Warren's own dashboard only.
# Needs curl or wget. FORCE=1 downloads again over an existing file.
set -eu
dir=${1:-$(dirname "$0")/rabbitmq-dashboards}
url=${RABBITMQ_OVERVIEW_URL:-https://grafana.com/api/dashboards/10991/revisions/latest/download}
out=$dir/RabbitMQ-Overview.json
mkdir -p "$dir"
if [ -s "$out" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "fetch-dashboards: $out is there already (FORCE=1 to download it again)"
  exit 0
fi
tmp=$out.tmp
if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --max-time 60 -o "$tmp" "$url"; }
else
  fetch() { wget -q -T 60 -O "$tmp" "$url"; }
fi
if ! fetch || [ "$(head -c 1 "$tmp" 2>/dev/null)" != "{" ]; then
  rm -f "$tmp"
  echo "fetch-dashboards: WARNING: could not download $url; the RabbitMQ-Overview dashboard is left out" >&2
  exit 0
fi
sed 's/\${DS_PROMETHEUS}/prometheus/g' "$tmp" >"$out"
rm -f "$tmp"
echo "fetch-dashboards: RabbitMQ-Overview dashboard written to $out"
