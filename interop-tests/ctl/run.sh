#!/usr/bin/env bash
# Interop test of `warren ctl` against a management HTTP API: Warren's, or the reference
# RabbitMQ's (whose API Warren's mirrors).
#
# Usage: interop-tests/ctl/run.sh
#   WARREN_MGMT_URL  the API (default http://guest:guest@127.0.0.1:15672, i.e. Warren).
#                    Reference RabbitMQ: WARREN_MGMT_URL=http://guest:guest@127.0.0.1:15680
#   AMQP_URL         the same broker's AMQP, for the connection close_connection closes
#                    (default amqp://guest:guest@127.0.0.1:5672/%2F; reference: port 5680)
#   WARREN_BIN       the warren binary; by default `cargo build --bin warren`, copied to a
#                    temporary directory at once (a shared CARGO_TARGET_DIR may be rebuilt by
#                    another checkout while this runs)
#
# Needs curl and python3 (the AMQP peer, interop-tests/ctl/amqp_peer.py, is standard library
# only). Works in vhost / on objects named ctl-it-<pid>-*, removed at exit, so it can run against
# a broker others use. Prints one line per check, then "N passed, M failed"; exits 1 if any failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
case ${1:-} in
  -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

export WARREN_MGMT_URL=${WARREN_MGMT_URL:-http://guest:guest@127.0.0.1:15672}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
echo "ctl interop: WARREN_MGMT_URL=$WARREN_MGMT_URL AMQP_URL=$AMQP_URL"

tmp=$(mktemp -d)
if [[ -z ${WARREN_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}
  (cd "$root" && cargo build -q --bin warren) || { echo "ctl interop: cargo build failed"; exit 1; }
  # Another checkout sharing the target directory may have replaced debug/warren since cargo
  # last linked this one, and cargo does not copy a fresh binary again: relink to get ours.
  if ! "$CARGO_TARGET_DIR/debug/warren" ctl set_vhost_limits --help >/dev/null 2>&1; then
    touch "$root/src/main.rs" "$root/src/lib.rs" "$root"/src/ctl/*.rs
    (cd "$root" && cargo build -q --bin warren) || { echo "ctl interop: cargo build failed"; exit 1; }
  fi
  cp "$CARGO_TARGET_DIR/debug/warren" "$tmp/warren"
  WARREN_BIN=$tmp/warren
fi

# The API root for curl: credentials stay in the URL (curl sends them), `/api` appended as ctl does.
api=${WARREN_MGMT_URL%/}
[[ $api == */api ]] || api=$api/api
p=ctl-it-$$
queue=$p-q
held=$p-held
policy=$p-pol
user=$p-user
vhost=$p-vh

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# run ARGS...: warren ctl ARGS, leaving $out, $err and $rc.
run() {
  out=$("$WARREN_BIN" ctl "$@" 2>"$tmp/err" </dev/null)
  rc=$?
  err=$(cat "$tmp/err")
}

# expect NAME RC [TEXT]: the last run exited RC and (if given) printed TEXT on stdout.
expect() {
  local name=$1 want=$2 text=${3:-}
  if [[ $rc != "$want" ]]; then
    bad "$name: exit $rc, expected $want; stderr: $err"
  elif [[ -n $text && $out != *"$text"* ]]; then
    bad "$name: output lacks $(printf %q "$text"):"$'\n'"$out"
  else
    ok "$name"
  fi
}

# expect_error NAME RC: failed with RC and an "Error: ..." line on stderr.
expect_error() {
  if [[ $rc == "$2" && $err == Error:* ]]; then ok "$1 (exit $2)"; else bad "$1: exit $rc, expected $2; stderr: $err"; fi
}

# eventually NAME TEXT ARGS...: RabbitMQ's statistics lag by up to 5 s, so a listing is retried
# for 20 s until it shows TEXT.
eventually() {
  local name=$1 text=$2
  shift 2
  for _ in $(seq 1 40); do
    run "$@"
    [[ $rc == 0 && $out == *"$text"* ]] && { ok "$name"; return 0; }
    sleep 0.5
  done
  bad "$name: after 20 s, exit $rc and no $(printf %q "$text") in:"$'\n'"$out"$'\n'"$err"
}

http() { curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/json' "$@"; }

holder=
cleanup() {
  [[ -n $holder ]] && kill "$holder" 2>/dev/null
  for q in "$queue" "$held"; do http -X DELETE "$api/queues/%2F/$q" >/dev/null; done
  http -X DELETE "$api/policies/%2F/$policy" >/dev/null
  http -X DELETE "$api/operator-policies/%2F/$policy" >/dev/null
  http -X DELETE "$api/users/$user" >/dev/null
  http -X DELETE "$api/vhosts/$vhost" >/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- reachability
run -t 30 await_startup
expect "await_startup" 0
run ping
expect "ping" 0 "Ping succeeded"
run status
expect "status" 0 "Status of node"
run --uri http://127.0.0.1:1 ping
expect_error "ping an address nothing listens on" 69
run --password "wrong-$p" ping
expect_error "ping with a wrong password" 77
# The container healthcheck: no credentials needed (a wrong password changes nothing).
read -r amqp_host amqp_port < <(python3 -c 'import sys, urllib.parse as u; a = u.urlsplit(sys.argv[1]); print(a.hostname, a.port or 5672)' "$AMQP_URL")
run --password "wrong-$p" --host "$amqp_host" check_port_connectivity --amqp-port "$amqp_port"
expect "check_port_connectivity" 0 "Successfully connected"
run --host 127.0.0.1 check_port_connectivity --amqp-port 1
expect_error "check_port_connectivity with nothing on the AMQP port" 69

# --- queues
code=$(http -X PUT -d '{"durable":true,"arguments":{"x-max-length":100}}' "$api/queues/%2F/$queue")
[[ $code == 201 || $code == 204 ]] && ok "declare $queue over HTTP ($code)" || bad "declare $queue over HTTP: $code"
python3 "$here/amqp_peer.py" publish "$AMQP_URL" "$queue" 3 && ok "publish 3 messages over AMQP" || bad "publish over AMQP"
eventually "list_queues shows 3 messages" "$queue"$'\t'"3" -q --formatter tsv list_queues name messages
run list_queues
expect "list_queues (table, banner)" 0 "Listing queues for vhost / ..."
[[ $out == *"│ name "*"│ messages │"* && $out == *"│ $queue "* ]] && ok "list_queues table layout" || bad "list_queues table:"$'\n'"$out"
run --formatter json list_queues name durable arguments
if [[ $rc == 0 ]] && python3 -c '
import json, sys
rows = [r for r in json.loads(sys.argv[1]) if r["name"] == sys.argv[2]]
assert rows and list(rows[0]) == ["name", "durable", "arguments"], rows
assert rows[0]["durable"] is True and rows[0]["arguments"] == {"x-max-length": 100}, rows
' "$out" "$queue"; then ok "list_queues --formatter json"; else bad "list_queues json: $out"; fi
run -s --formatter tsv list_queues name messages_ready consumers durable auto_delete policy
expect "list_queues with rabbitmqctl columns, no header" 0 "$queue"$'\t'
[[ $out != *"messages_ready"* ]] || bad "-s still printed the header"
run list_queues bogus_column
expect_error "list_queues with an unknown column" 64
run -p "no-such-vhost-$p" list_queues
expect_error "list_queues in a vhost that does not exist" 65

run delete_queue "$queue" --if-empty
expect_error "delete_queue --if-empty on a queue with messages" 65
run purge_queue "$queue"
expect "purge_queue" 0 "Purging queue '$queue' in vhost '/' ..."
eventually "list_queues shows the queue empty" "$queue"$'\t'"0" -q --formatter tsv list_queues name messages
run purge_queue "no-such-queue-$p"
expect_error "purge_queue of a queue that does not exist" 69

# --- other listings
run -q --formatter tsv list_exchanges name type
expect "list_exchanges" 0 "amq.direct"$'\t'"direct"
run -q --formatter tsv list_bindings
expect "list_bindings" 0 "$queue"$'\t'"queue"
run -q --formatter tsv list_vhosts name
expect "list_vhosts" 0 "/"
run -q list_users
expect "list_users" 0 "tags"
run -q list_permissions
expect "list_permissions" 0 "configure"

# --- policies
run set_policy "$policy" "^$queue\$" '{"max-length":2}' --priority 5 --apply-to queues
expect "set_policy" 0 "Setting policy \"$policy\""
run -q --formatter tsv list_policies
expect "list_policies shows it" 0 "/"$'\t'"$policy"$'\t'"^$queue\$"$'\t'"queues"$'\t'"{\"max-length\":2}"$'\t'"5"
run set_policy "$policy-x" ".*" '{not json'
expect_error "set_policy with a definition that is not JSON" 65
run set_policy "$policy-x" "^$queue-nothing\$" '{"no-such-setting":1}'
expect_error "set_policy with a definition the broker rejects" 65
run set_operator_policy "$policy" "^$queue\$" '{"max-length":50}' --apply-to queues
expect "set_operator_policy" 0
run -q --formatter tsv list_operator_policies
expect "list_operator_policies shows it" 0 "$policy"$'\t'"^$queue\$"
run clear_operator_policy "$policy"
expect "clear_operator_policy" 0

# --- definitions: export, delete, import only this test's part back (the broker may be shared)
run export_definitions "$tmp/all.json"
expect "export_definitions FILE" 0
if python3 - "$tmp/all.json" "$tmp/ours.json" "$queue" "$policy" <<'PY'
import json, sys
defs = json.load(open(sys.argv[1]))
queues = [q for q in defs.get("queues", []) if q["name"] == sys.argv[3]]
policies = [p for p in defs.get("policies", []) if p["name"] == sys.argv[4]]
assert len(queues) == 1 and len(policies) == 1, (queues, policies)
json.dump({"queues": queues, "policies": policies}, open(sys.argv[2], "w"))
PY
then ok "the export has the queue and the policy"; else bad "the export lacks the queue or the policy"; fi
run export_definitions -
if [[ $rc == 0 ]] && python3 -c 'import json,sys; json.loads(sys.argv[1])' "$out"; then ok "export_definitions - is JSON"; else bad "export_definitions -: $rc $err"; fi
run delete_queue "$queue"
expect "delete_queue" 0 "Queue was successfully deleted"
run clear_policy "$policy"
expect "clear_policy" 0
run clear_policy "$policy"
expect_error "clear_policy of a policy that is gone" 69
run -q --formatter tsv list_queues name
[[ $out != *"$queue"* ]] && ok "the queue is gone" || bad "the queue is still listed"
run import_definitions "$tmp/ours.json"
expect "import_definitions FILE" 0
eventually "the imported queue is back" "$queue" -q --formatter tsv list_queues name
run -q --formatter tsv list_policies
expect "the imported policy is back" 0 "$policy"$'\t'"^$queue\$"
"$WARREN_BIN" ctl -q import_definitions - <"$tmp/ours.json" >/dev/null 2>&1 && ok "import_definitions - (again, idempotent)" || bad "import_definitions -"
printf '{"queues": [' >"$tmp/broken.json"
run import_definitions "$tmp/broken.json"
expect_error "import_definitions of broken JSON" 65
run import_definitions "$tmp/no-such-file.json"
expect_error "import_definitions of a missing file" 66

# --- connections: one AMQP connection with a consumer, then close it
http -X PUT -d '{"durable":false,"auto_delete":false}' "$api/queues/%2F/$held" >/dev/null
python3 "$here/amqp_peer.py" hold "$AMQP_URL" "$p-conn" "$held" >"$tmp/holder.out" 2>&1 &
holder=$!
eventually "list_connections shows the connection" $'\t'"$p-conn" -q --formatter tsv list_connections name user_provided_name
conn=$(printf '%s\n' "$out" | awk -F'\t' -v n="$p-conn" '$2 == n { print $1 }')
eventually "list_channels shows its channel" "$conn (1)" -q --formatter tsv list_channels name consumer_count
eventually "list_consumers shows its consumer" "$held"$'\t' -q --formatter tsv list_consumers queue_name consumer_tag
[[ $out == *"$p-conn-tag"* ]] && ok "list_consumers has the consumer tag" || bad "list_consumers: $out"
run close_connection "$conn" "closed by ctl-it"
expect "close_connection" 0 "Closing connection $conn, reason: closed by ctl-it..."
for _ in $(seq 1 100); do kill -0 "$holder" 2>/dev/null || break; sleep 0.1; done
wait "$holder" 2>/dev/null
holder=
grep -q "^closed 320 CONNECTION_FORCED - closed by ctl-it" "$tmp/holder.out" && ok "the client got connection.close 320 with the reason" || bad "the client saw: $(cat "$tmp/holder.out")"
run close_connection "no-such-connection-$p" "x"
expect_error "close_connection of a connection that does not exist" 69

# --- access control: a user and a vhost of this test's own
run add_user "$user" "pw-$p"
expect "add_user" 0 "Adding user \"$user\" ..."
run add_user "$user" x
expect_error "add_user of a user that exists" 70
run authenticate_user "$user" "pw-$p"
expect "authenticate_user (no management tag: the password still counts)" 0 "Success"
run authenticate_user "$user" "wrong-$p"
expect_error "authenticate_user with a wrong password" 65
run set_user_tags "$user" monitoring management
expect "set_user_tags" 0 "Setting tags for user \"$user\" to [monitoring, management] ..."
run -q --formatter tsv list_users
expect "list_users shows the tags" 0 "$user"$'\t'"[monitoring, management]"
run -q authenticate_user "$user" "pw-$p"
expect "set_user_tags kept the password" 0 "Success"
run change_password "$user" "pw2-$p"
expect "change_password" 0 "Changing password for user \"$user\" ..."
run -q authenticate_user "$user" "pw2-$p"
expect "authenticate_user with the new password" 0 "Success"
run -q --formatter tsv list_users
expect "change_password kept the tags" 0 "$user"$'\t'"[monitoring, management]"
run clear_password "$user"
expect "clear_password" 0 "Clearing password for user \"$user\" ..."
run -q authenticate_user "$user" "pw2-$p"
expect_error "authenticate_user after clear_password" 65
run change_password "no-such-user-$p" x
expect_error "change_password of a user that does not exist" 67

run add_vhost "$vhost" --description "ctl interop" --tags a,b --default-queue-type classic
expect "add_vhost" 0 "Adding vhost \"$vhost\" ..."
run -q --formatter tsv list_vhosts name description
expect "list_vhosts shows it" 0 "$vhost"$'\t'"ctl interop"
run -p "$vhost" set_permissions "$user" "^$p-" ".*" ".*"
expect "set_permissions" 0 "Setting permissions for user \"$user\" in vhost \"$vhost\" ..."
run -q -p "$vhost" --formatter tsv list_permissions
expect "list_permissions shows them" 0 "$user"$'\t'"^$p-"$'\t'".*"$'\t'".*"
run -q --formatter tsv list_user_permissions "$user"
expect "list_user_permissions" 0 "$vhost"$'\t'"^$p-"$'\t'".*"$'\t'".*"
run set_permissions "no-such-user-$p" ".*" ".*" ".*"
expect_error "set_permissions for a user that does not exist" 67
run -p "no-such-vhost-$p" set_permissions "$user" ".*" ".*" ".*"
expect_error "set_permissions in a vhost that does not exist" 65
run -p "$vhost" set_topic_permissions "$user" amq.topic "^$p\\." ".*"
expect "set_topic_permissions" 0 "Setting topic permissions on \"amq.topic\" for user \"$user\" in vhost \"$vhost\" ..."
run -q -p "$vhost" set_topic_permissions "$user" "$p-logs" "w" "r"
expect "set_topic_permissions on a second exchange" 0
run -q -p "$vhost" --formatter tsv list_topic_permissions
# (tsv escapes the pattern's backslash)
expect "list_topic_permissions" 0 "$user"$'\t'"amq.topic"$'\t'"^$p\\\\."$'\t'".*"
run -p "$vhost" clear_topic_permissions "$user" amq.topic
expect "clear_topic_permissions on one exchange" 0 "Clearing topic permissions on \"amq.topic\" for user"
run -q -p "$vhost" --formatter tsv list_topic_permissions
[[ $out != *amq.topic* && $out == *"$p-logs"$'\t'"w"$'\t'"r"* ]] && ok "only that exchange's are gone" || bad "after clear_topic_permissions on amq.topic:"$'\n'"$out"
run -p "$vhost" clear_topic_permissions "$user"
expect "clear_topic_permissions (all)" 0 "Clearing topic permissions for user \"$user\" in vhost \"$vhost\" ..."
run -q -p "$vhost" --formatter tsv list_topic_permissions
[[ $out != *"$user"* ]] && ok "no topic permissions left" || bad "topic permissions left:"$'\n'"$out"
run -p "$vhost" clear_permissions "$user"
expect "clear_permissions" 0 "Clearing permissions for user \"$user\" in vhost \"$vhost\" ..."
run -q --formatter tsv list_user_permissions "$user"
[[ $rc == 0 && $out != *"$vhost"* ]] && ok "list_user_permissions is empty" || bad "list_user_permissions: $rc $out"
run -q -p "$vhost" clear_permissions "$user"
expect "clear_permissions with nothing to clear" 0
run clear_permissions "no-such-user-$p"
expect_error "clear_permissions of a user that does not exist" 67

# vhost limits (a broker whose API lacks /vhost-limits must say so)
limits() { curl -sS "$api/vhost-limits/$vhost"; }
if [[ $(http "$api/vhost-limits/$vhost") == 404 ]]; then
  run -p "$vhost" clear_vhost_limits
  expect_error "clear_vhost_limits on an API without /vhost-limits" 69
  echo "skip the other vhost limit checks: this API has no /vhost-limits"
else
  run -p "$vhost" set_vhost_limits '{"max-connections":64,"max-queues":10}'
  expect "set_vhost_limits" 0 "Setting vhost limits to \"{\"max-connections\":64,\"max-queues\":10}\" for vhost \"$vhost\" ..."
  [[ $(limits) == *'"max-connections":64'* && $(limits) == *'"max-queues":10'* ]] && ok "the limits are set" || bad "limits: $(limits)"
  run -q -p "$vhost" set_vhost_limits '{"max-queues":5}'
  expect "set_vhost_limits again" 0
  [[ $(limits) == *'"max-queues":5'* && $(limits) != *max-connections* ]] && ok "set_vhost_limits replaced them" || bad "limits: $(limits)"
  run -p "$vhost" set_vhost_limits '{"no-such-limit":1}'
  expect_error "set_vhost_limits with a limit the broker rejects" 65
  run -p "$vhost" clear_vhost_limits
  expect "clear_vhost_limits" 0 "Clearing vhost \"$vhost\" limits ..."
  [[ $(limits) == "[]" ]] && ok "no limits left" || bad "limits: $(limits)"
fi

# user limits: set_user_limits adds to a user's limits; every failure is 69, as rabbitmqctl's
run set_user_limits "$user" '{"max-connections":3}'
expect "set_user_limits" 0 "Setting user limits to \"{\"max-connections\":3}\" for user \"$user\" ..."
run -q set_user_limits "$user" '{"max-channels":5}'
expect "set_user_limits again" 0
run -q list_user_limits --user "$user"
expect "set_user_limits kept the first limit" 0 '{"max-channels":5,"max-connections":3}'
run clear_user_limits "$user" max-channels
expect "clear_user_limits one" 0 "Clearing \"max-channels\" limit for user \"$user\" ..."
run -q list_user_limits --user "$user"
expect "one limit left" 0 '{"max-connections":3}'
run set_user_limits "$user" '{"max-queues":1}'
expect_error "set_user_limits with a limit the broker rejects" 69
run set_user_limits "no-such-user-$p" '{"max-channels":1}'
expect_error "set_user_limits of a user that does not exist" 69
run clear_user_limits "$user" all
expect "clear_user_limits all" 0 "Clearing all limits for user \"$user\" ..."
run -q list_user_limits --user "$user"
expect "no user limits left" 0 '{}'

run delete_user "$user"
expect "delete_user" 0 "Deleting user \"$user\" ..."
run delete_user "$user"
expect_error "delete_user of a user that is gone" 67
run delete_vhost "$vhost"
expect "delete_vhost" 0 "Deleting vhost \"$vhost\" ..."
run delete_vhost "$vhost"
expect_error "delete_vhost of a vhost that is gone" 65

echo
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
