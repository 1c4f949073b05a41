#!/usr/bin/env bash
# Warren's web UI in a headless Chromium (Playwright's playwright-core driving Debian's
# chromium; no browser download). Needs a running Warren:
#
#   MGMT_URL=http://127.0.0.1:15672 AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F interop-tests/ui/run.sh
#
#   MGMT_URL       the management listener (default http://127.0.0.1:15672; guest:guest unless
#                  credentials are given in it)
#   AMQP_URL       the same broker's AMQP listener (default amqp://guest:guest@127.0.0.1:5672/%2F)
#   CHROMIUM       the browser (default /usr/bin/chromium; scripts/install-deps.sh --test installs it)
#   UI_SCREENSHOTS where the screenshots go (default interop-tests/ui/screenshots; the README's
#                  are refreshed with UI_SCREENSHOTS=docs/ui)
#
# Warren's own console, so it is not run against RabbitMQ.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Relative to where run.sh was called from, not to where the tests run.
[[ -n ${UI_SCREENSHOTS:-} ]] && UI_SCREENSHOTS=$(realpath -m "$UI_SCREENSHOTS") && export UI_SCREENSHOTS
stamp=$here/node_modules/.ui-lock.sha256
want=$(sha256sum "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "ui tests: npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  echo "$want" >"$stamp"
fi
[[ ${1:-} == setup ]] && exit 0
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
  echo "ui tests: no browser at $CHROMIUM (apt-get install chromium, or set CHROMIUM)" >&2
  exit 1
fi
cd "$here"
limit=()
command -v timeout >/dev/null && limit=(timeout --kill-after=15 600)
"${limit[@]}" node --test --test-concurrency=1 --test-reporter=spec ui.test.js
