#!/usr/bin/env bash
# The reference RabbitMQ (Debian's rabbitmq-server, 3.10.8) with an AMQPS listener configured as
# interop-tests/tls/run.sh configures Warren, for checking the TLS interop tests against it. A
# second, private instance beside the plain reference (/work/shared/tools/reference-rabbitmq.sh,
# which this mirrors): its own ports, data directory, epmd and Erlang node name.
#
#   reference-rabbitmq-tls.sh start [--fresh]   start (--fresh: new data and new certificates);
#                                               prints the AMQPS, management and plain AMQP URLs
#   reference-rabbitmq-tls.sh stop | restart | status | url | pki
#
# Env: PORT (plain AMQP, default 5690), TLS_PORT (AMQPS, default PORT+1), MGMT_PORT (management
#      HTTP API, default PORT+10000), BASE (data, logs, certificates; default
#      /tmp/reference-rabbitmq-tls-$PORT). guest/guest on loopback.
# TLS: the certificates of make-pki.sh in $BASE/pki (made on start when missing);
#      ssl_options.verify = verify_peer, fail_if_no_peer_cert = true, TLS 1.3 and 1.2;
#      auth_mechanisms PLAIN, AMQPLAIN, EXTERNAL (rabbitmq_auth_mechanism_ssl),
#      ssl_cert_login_from = distinguished_name (env SSL_CERT_LOGIN_FROM=common_name for the CN).
# Plugins: rabbitmq_management, rabbitmq_auth_mechanism_ssl.
set -euo pipefail
cmd=${1:-status}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${PORT:-5690}
TLS_PORT=${TLS_PORT:-$((PORT + 1))}
MGMT_PORT=${MGMT_PORT:-$((PORT + 10000))}
BASE=${BASE:-/tmp/reference-rabbitmq-tls-$PORT}
PKI=$BASE/pki
SBIN=/usr/lib/rabbitmq/bin

export HOME=$BASE                     # the Erlang cookie lives here
export ERL_EPMD_PORT=$((PORT - 1000)) # a private epmd, not the default 4369
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_NODENAME=referencetls$PORT@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$PORT
export RABBITMQ_DIST_PORT=$((PORT + 20000))
export RABBITMQ_MNESIA_BASE=$BASE/mnesia
export RABBITMQ_LOG_BASE=$BASE/log
export RABBITMQ_CONFIG_FILE=$BASE/rabbitmq.conf
export RABBITMQ_ADVANCED_CONFIG_FILE=$BASE/advanced.config
export RABBITMQ_ENABLED_PLUGINS_FILE=$BASE/enabled_plugins
export RABBITMQ_CONF_ENV_FILE=$BASE/rabbitmq-env.conf
export RABBITMQ_PID_FILE=$BASE/rabbit.pid

urls() {
  echo "amqps://guest:guest@127.0.0.1:$TLS_PORT/%2F"
  echo "http://guest:guest@127.0.0.1:$MGMT_PORT"
  echo "amqp://guest:guest@127.0.0.1:$PORT/%2F"
}

running() { [[ -f $BASE/server.pid ]] && kill -0 "$(cat "$BASE/server.pid")" 2>/dev/null; }

start() {
  if ! [[ -x $SBIN/rabbitmq-server ]]; then
    echo "installing Debian's rabbitmq-server ..." >&2
    (apt-get install -y -q rabbitmq-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q rabbitmq-server >/dev/null; })
    # The package may start a system instance on 5672; this script never uses or stops it.
  fi
  if running; then urls; return 0; fi
  if [[ ${1:-} == --fresh ]]; then rm -rf "$RABBITMQ_MNESIA_BASE" "$PKI"; fi
  mkdir -p "$BASE" "$RABBITMQ_LOG_BASE" "$RABBITMQ_MNESIA_BASE"
  [[ -f $PKI/ca.pem ]] || "$here/make-pki.sh" "$PKI"
  cat >"$RABBITMQ_CONFIG_FILE" <<CONF
listeners.tcp.default = 127.0.0.1:$PORT
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $PKI/ca.pem
ssl_options.certfile = $PKI/server.pem
ssl_options.keyfile = $PKI/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = ${SSL_CERT_LOGIN_FROM:-distinguished_name}
management.tcp.port = $MGMT_PORT
management.tcp.ip = 127.0.0.1
loopback_users.guest = true
log.file.level = info
log.console = false
CONF
  echo "[]." >"$RABBITMQ_ADVANCED_CONFIG_FILE"
  echo "[rabbitmq_management,rabbitmq_auth_mechanism_ssl]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  : >"$RABBITMQ_CONF_ENV_FILE"
  setsid "$SBIN/rabbitmq-server" >"$RABBITMQ_LOG_BASE/startup.log" 2>&1 </dev/null &
  echo $! >"$BASE/server.pid"
  for _ in $(seq 1 120); do
    if "$SBIN/rabbitmq-diagnostics" -q check_port_connectivity >/dev/null 2>&1; then urls; return 0; fi
    if ! running; then
      echo "rabbitmq-server exited; logs in $RABBITMQ_LOG_BASE" >&2
      tail -20 "$RABBITMQ_LOG_BASE/startup.log" >&2
      return 1
    fi
    sleep 1
  done
  echo "RabbitMQ did not come up in 120 s; logs in $RABBITMQ_LOG_BASE" >&2
  return 1
}

stop() {
  running || { echo "not running"; return 0; }
  "$SBIN/rabbitmqctl" -q stop >/dev/null 2>&1 || kill "$(cat "$BASE/server.pid")" 2>/dev/null || true
  for _ in $(seq 1 30); do running || break; sleep 1; done
  rm -f "$BASE/server.pid"
  /usr/lib/erlang/bin/epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true # our private epmd only
  echo "stopped"
}

case $cmd in
  start) start "${2:-}" ;;
  stop) stop ;;
  restart) stop >/dev/null; start ;;
  status) if running; then echo "running (pid $(cat "$BASE/server.pid"))"; urls; else echo "not running"; fi ;;
  url) urls ;;
  pki) echo "$PKI" ;;
  *) echo "usage: $0 start [--fresh] | stop | restart | status | url | pki" >&2; exit 2 ;;
esac
