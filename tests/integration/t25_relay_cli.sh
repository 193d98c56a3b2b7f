#!/usr/bin/env bash
# The relay's operator commands: subscriptions add (generated secret shown
# once, never listed), list, rotate-secret, disable/enable; deliveries
# list and retry; and the relay's figures in /health and /metrics.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"a": {"scheme": "standard", "secrets": []}, "b": {"scheme": "standard", "secrets": [], "script": ["400"]}}'
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; backoff = { base_ms = 100; }; };' 'health = { listen = "127.0.0.1:0"; };'
P=("$BIN" -c "$T/a.conf")
out=$("${P[@]}" subscriptions add --name alpha --url "http://127.0.0.1:$SINK_PORT/a" --events 'job.*' --header 'X-Team: ops')
assert_eq "$?" 0 "subscriptions add: exit 0"
SECRET1=$(printf '%s\n' "$out" | sed -n 's/^secret (shown once.*): \(whsec_.*\)$/\1/p')
assert_match "$SECRET1" '^whsec_[A-Za-z0-9+/=]{32,}$' "a standard secret is generated and shown once"
out=$("${P[@]}" subscriptions add --name beta --url "http://127.0.0.1:$SINK_PORT/b" --events 'job.failing' --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)
assert_eq "$?" 0 "add with a given secret"
printf '{"a": {"scheme": "standard", "secrets": ["%s"]}, "b": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["400"]}}\n' "$SECRET1" >"$T/sink.json"

list=$("${P[@]}" subscriptions list)
assert_match "$list" 'alpha +enabled' "list shows alpha enabled"
assert_eq "$(printf '%s' "$list" | grep -c -e "$SECRET1" -e whsec_MfKQ)" 0 "list never shows a secret"
assert_eq "$("${P[@]}" subscriptions list --json | grep -c '"name": "beta"')" 1 "list --json"
"${P[@]}" subscriptions add --name x --url http://127.0.0.1:1/x --scheme rot13 >/dev/null 2>&1
assert_eq "$?" 64 "unknown scheme: exit 64"
"${P[@]}" subscriptions add --name x --url http://127.0.0.1:1/x --header 'Content-Length: 5' >/dev/null 2>&1
assert_eq "$?" 64 "a header that would change the framing: exit 64"
"${P[@]}" subscriptions add --name x --url http://127.0.0.1:1/x --signature-header 'X Sig' >/dev/null 2>&1
assert_eq "$?" 64 "a header name that is not a token: exit 64"
"${P[@]}" subscriptions frobnicate >/dev/null 2>&1
assert_eq "$?" 64 "unknown verb: exit 64"

start_daemon a "$T/a.conf"
insert_events job.created 1 "'{}'"
wait_sink 'r["key"] == "a" and r["sig_ok"]' 1 10 || fail "generated secret does not verify"

# Rotation keeping the old secret: the receiver may know only the new one.
out=$("${P[@]}" subscriptions rotate-secret alpha --keep-old)
SECRET2=$(printf '%s\n' "$out" | sed -n 's/^secret (shown once.*): \(whsec_.*\)$/\1/p')
assert_match "$SECRET2" '^whsec_' "rotate-secret shows the new secret"
assert_eq "$(q "SELECT secret = '$SECRET2 $SECRET1' FROM subscriptions WHERE name = 'alpha'")" t "both secrets sign during the rotation"
printf '{"a": {"scheme": "standard", "secrets": ["%s"]}, "b": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["400"]}}\n' "$SECRET2" >"$T/sink.json"
insert_events job.created 1 "'{}'"
wait_sink 'r["key"] == "a" and r["sig_ok"]' 2 10 || fail "new secret does not verify"

out=$("${P[@]}" subscriptions disable alpha --reason 'receiver maintenance')
assert_eq "$out" "subscription alpha disabled" "disable"
assert_match "$("${P[@]}" subscriptions list)" 'alpha +disabled.*receiver maintenance' "list shows the reason"
insert_events job.created 1 "'{}'"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 10
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'alpha'")" 2 "no delivery queued for a disabled subscription"
"${P[@]}" subscriptions enable alpha >/dev/null
assert_eq "$(q "SELECT enabled FROM subscriptions WHERE name = 'alpha'")" t "enable"
"${P[@]}" subscriptions disable nosuch >/dev/null 2>&1
assert_eq "$?" 65 "unknown subscription: exit 65"

# A 400 fails for good; deliveries retry queues it again.
beta="SELECT d.status || '|' || d.attempt FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'beta'"
insert_events job.failing 1 "'{}'"
wait_for "$beta" "failed|1" 10 || fail "400 not failed"
assert_match "$("${P[@]}" deliveries list --status failed)" 'beta +job.failing +failed +1 +400' "deliveries list --status failed"
out=$("${P[@]}" deliveries retry --subscription beta)
assert_eq "$out" "1 deliveries queued again" "deliveries retry --subscription"
wait_for "$beta" "delivered|1" 10 || fail "retried delivery not delivered"
D=$(q "SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'beta'")
q "UPDATE deliveries SET status = 'dead' WHERE id = '$D'"
assert_eq "$("${P[@]}" deliveries retry "$D")" "1 deliveries queued again" "deliveries retry ID"
# An option after the ids is an option, not one more id.
wait_for "$beta" "delivered|1" 10 || fail "retried delivery not delivered"
q "UPDATE deliveries SET status = 'dead' WHERE id = '$D'"
"${P[@]}" deliveries retry "$D" --json >"$T/retry.out" 2>&1
assert_eq "$?" 0 "deliveries retry ID --json: exit 0"
assert_eq "$(cat "$T/retry.out")" "1 deliveries queued again" "deliveries retry ID --json queued the one delivery"
assert_match "$(q "SELECT status FROM deliveries WHERE id = '$D'")" '^(pending|in_flight|delivered)$' "the dead delivery is queued again"

PORT=$(health_port a)
sleep 5.5 # one queue sample with the relay figures
H=$(http_get "$PORT" /health)
assert_eq "$(jget "$H" 'relay,connected')" true "/health relay.connected"
assert_match "$(jget "$H" 'relay,delivered')" '^[1-9]' "/health relay.delivered"
assert_match "$(http_get "$PORT" /metrics)" 'pgeventd_deliveries_total\{subscription="alpha",outcome="delivered"\} 3' "deliveries_total by subscription"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
