#!/usr/bin/env bash
# Installs what building and testing Warren needs on a Debian machine with Rust:
#   --build    clang/libclang (RocksDB's bindings) and a C++ toolchain
#   --test     also: Debian's AMQP spec XML, the Python venv (pamqp, pika, pytest), the
#              Node clients for interop-tests/, Debian's chromium with playwright-core for the
#              web UI's browser test (interop-tests/ui), the openssl CLI (interop-tests/tls
#              makes its certificates with it), and Docker Engine, docker-compose and
#              debootstrap for interop-tests/docker (best effort: that test skips without them)
# Idempotent and quiet when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[[ ${1:-} == --test ]] && want_test=true

apt_packages=(clang libclang-dev g++ make)
$want_test && apt_packages+=(amqp-specs python3-venv nodejs npm chromium openssl)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# python3-venv / nodejs / npm may come from elsewhere (pyenv, a Node install): only ask apt for
# them when the commands themselves are missing.
filtered=()
for p in "${missing[@]}"; do
  case $p in
    python3-venv) python3 -c 'import venv, ensurepip' 2>/dev/null || filtered+=("$p") ;;
    nodejs) command -v node >/dev/null || filtered+=("$p") ;;
    npm) command -v npm >/dev/null || filtered+=("$p") ;;
    chromium) [[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || filtered+=("$p") ;;
    openssl) command -v openssl >/dev/null || filtered+=("$p") ;;
    *) filtered+=("$p") ;;
  esac
done
if ((${#filtered[@]})); then
  echo "installing ${filtered[*]} ..." >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${filtered[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${filtered[@]}" >/dev/null; }
fi

$want_test || exit 0

# The container test (interop-tests/docker/run.sh) needs Docker Engine, Compose and debootstrap;
# without them it prints SKIPPED, so a failed install is only a warning here.
docker_missing=()
command -v dockerd >/dev/null || docker_missing+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || docker_missing+=(docker-compose)
command -v debootstrap >/dev/null || docker_missing+=(debootstrap)
if ((${#docker_missing[@]})); then
  echo "installing ${docker_missing[*]} (for interop-tests/docker) ..." >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${docker_missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${docker_missing[@]}" >/dev/null 2>&1; } \
    || echo "warning: could not install ${docker_missing[*]}; interop-tests/docker will be skipped" >&2
fi

# The Python venv (pamqp, pika, pytest) and Node modules (amqplib) for the differential and
# interop tests; run.sh owns that setup.
interop-tests/run.sh setup
# playwright-core (the driver only: it drives the chromium above and downloads no browser).
interop-tests/ui/run.sh setup

# rabbitmqadmin (RabbitMQ's own CLI, a single Python 3 script) for interop-tests/mgmt: taken from
# Debian's rabbitmq-server package without installing it (no Erlang, no service started).
tools=${WARREN_TOOLS_DIR:-$HOME/.cache/warren-tools}
if ! command -v rabbitmqadmin >/dev/null && [[ ! -x $tools/rabbitmqadmin ]]; then
  echo "fetching rabbitmqadmin from Debian's rabbitmq-server package ..." >&2
  mkdir -p "$tools"
  tmp=$(mktemp -d)
  if (cd "$tmp" && { apt-get download rabbitmq-server >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get download rabbitmq-server >/dev/null 2>&1; }; }); then
    dpkg-deb -x "$tmp"/rabbitmq-server_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/rabbitmqadmin" "$tools/rabbitmqadmin" 2>/dev/null \
      || install -m 0755 "$(find "$tmp/x" -name rabbitmqadmin -type f | head -1)" "$tools/rabbitmqadmin"
  else
    echo "rabbitmqadmin unavailable: its interop tests will be skipped" >&2
  fi
  rm -rf "$tmp"
fi

# promtool (Prometheus's checker) for interop-tests/prometheus: taken from Debian's prometheus
# package without installing it, so no Prometheus server is installed or started.
if ! command -v promtool >/dev/null && [[ ! -x $tools/promtool ]]; then
  echo "fetching promtool from Debian's prometheus package ..." >&2
  mkdir -p "$tools"
  tmp=$(mktemp -d)
  if (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; }); then
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$tools/promtool"
  else
    echo "promtool unavailable: the Prometheus interop tests will fail" >&2
  fi
  rm -rf "$tmp"
fi
