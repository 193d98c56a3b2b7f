#!/usr/bin/env bash
# NATS authentication: a server that wants a token. The subscription whose
# secret is the token delivers; the one with a wrong token gets a clear
# error in delivery_attempts.error and is retried, the daemon lives on; no
# token ever reaches the log, the attempts' errors or `subscriptions list`.
. "$(dirname "$0")/lib.sh"
command -v nats-server >/dev/null || { echo "SKIP: no nats-server"; exit 77; }
. "${PGEVENTD_SRCDIR:?}/scripts/nats-server.sh"
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
GOOD=t82-good-token-Zq81x
BAD=t82-bad-token-Wm40p
trap 'nats_stop; cleanup' EXIT
NATS_EXTRA="--auth $GOOD" nats_start || die "nats-server"
HOSTPORT=${PGEVENTD_TEST_NATS#nats://}
setup_db
"$NS" "nats://$GOOD@$HOSTPORT" create T82 't82.>' || die "create stream"
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('good', 'nats://$HOSTPORT/t82.good.{event_type}?auth=token', '$GOOD', '[\"*\"]'),
   ('bad', 'nats://$HOSTPORT/t82.bad.{event_type}?auth=token', '$BAD', '[\"*\"]')" >/dev/null
conf "$T/a.conf" 'relay = { event_types = ["*"]; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };' \
	'log = { level = "debug"; };'
insert_events job.created 20 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'good' AND d.status = 'delivered'" 20 60 || die "the good token did not deliver"
assert_eq "$("$NS" "nats://$GOOD@$HOSTPORT" wait T82 20 10)" 20 "the stream holds the 20 messages"
wait_for "SELECT count(*) >= 40 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad'" t 30 || fail "the bad token's deliveries were not retried"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad' AND d.status = 'delivered'")" 0 "the bad token delivers nothing"
err=$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad' ORDER BY a.id DESC LIMIT 1")
assert_match "$err" "cannot connect to nats://127\.0\.0\.1:[0-9]+: Authentication Violation .check the user, token" "the error names the server and the authorisation failure: $err"
kill -0 "$DPID" 2>/dev/null && log "ok: the daemon is alive" || fail "the daemon died"
P=("$BIN" -c "$T/a.conf")
"${P[@]}" subscriptions list >"$T/list.out" 2>&1
stop_daemon $DPID; assert_eq $? 0 "exit 0"
assert_eq "$(cat "$T"/*.log "$T/list.out" | grep -c -e "$GOOD" -e "$BAD")" 0 "no token in the log or the list"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%$GOOD%' OR error LIKE '%$BAD%'")" 0 "no token in delivery_attempts.error"
finish
