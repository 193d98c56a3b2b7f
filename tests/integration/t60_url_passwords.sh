#!/usr/bin/env bash
# A subscription URL may carry a password (http://user:pass@host/...): it
# is used on the wire, and never shown: not by subscriptions add/list,
# show, status, deliveries list, /health, /metrics, the daemon's log nor
# the delivery errors recorded in the database; a refused add does not
# quote it either.
. "$(dirname "$0")/lib.sh"
setup_db
PW='Pw9xQzSecretKq'
start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; backoff = { base_ms = 100; cap_ms = 200; }; };' \
	'health = { listen = "127.0.0.1:0"; };' 'log = { level = "debug"; };'
P=("$BIN" -c "$T/a.conf")
out=$T/out
: >"$out"
run() { # label command...: stdout and stderr of every command go to $out
	printf '=== %s\n' "$1" >>"$out"
	shift
	"$@" >>"$out" 2>&1
}

run "add good" "${P[@]}" subscriptions add --name good --url "http://hook:$PW@127.0.0.1:$SINK_PORT/a" \
	--events 'job.*' --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
assert_eq "$?" 0 "add with a password in the URL"
run "add --json" "${P[@]}" subscriptions add --json --name dead --url "http://hook:$PW@127.0.0.1:1/x" \
	--events 'job.*' --max-attempts 1
assert_eq "$(q "SELECT url FROM subscriptions WHERE name = 'good'")" "http://hook:$PW@127.0.0.1:$SINK_PORT/a" \
	"the URL is stored as given"
# One libcurl cannot parse: shown with its whole userinfo hidden.
run "add unparsable" "${P[@]}" subscriptions add --name odd --url "http://hook:$PW@[::1/x" \
	--events 'job.*' --max-attempts 1
assert_eq "$?" 0 "add a URL libcurl cannot parse"
run "add ftp" "${P[@]}" subscriptions add --name x --url "ftp://hook:$PW@127.0.0.1/x"
assert_eq "$?" 64 "a URL that is not http(s): exit 64"
run "add duplicate" "${P[@]}" subscriptions add --name good --url "http://hook:$PW@127.0.0.1/x"
assert_eq "$?" 65 "a duplicate name: exit 65"

start_daemon a "$T/a.conf"
port=$(health_port a) || die "no health port"
insert_events job.created 1 "'{}'"
wait_sink 'r["key"] == "a" and r["sig_ok"]' 1 10 || fail "the delivery with a password in its URL did not arrive"
wait_for "SELECT count(*) FROM deliveries WHERE status IN ('dead', 'failed')" 2 10 || fail "the delivery to a closed port is not dead"
ev=$(q "SELECT id FROM events LIMIT 1")

run "list" "${P[@]}" subscriptions list
run "list --json" "${P[@]}" subscriptions list --json
run "show" "${P[@]}" show "$ev"
run "show --json" "${P[@]}" show "$ev" --json
run "status" "${P[@]}" status
run "status --json" "${P[@]}" status --json
run "deliveries list" "${P[@]}" deliveries list
run "deliveries list --json" "${P[@]}" deliveries list --json
run "check-config --print" "${P[@]}" check-config --print
printf '=== /health\n' >>"$out"
http_get "$port" /health >>"$out"
printf '=== /metrics\n' >>"$out"
http_get "$port" /metrics >>"$out"
printf '=== database: delivery errors\n' >>"$out"
q "SELECT coalesce(last_error, '') FROM deliveries UNION ALL SELECT coalesce(error, '') FROM delivery_attempts" >>"$out"
stop_daemon "$DPID"
printf '=== daemon log\n' >>"$out"
cat "$T/a.log" >>"$out"

assert_match "$(cat "$out")" "http://hook:\*\*\*@127\.0\.0\.1:$SINK_PORT/a" "the URL is shown with *** for its password"
assert_match "$(sed -n '/^=== list --json/,/^===/p' "$out")" '"url": "http://hook:\*\*\*@' "list --json redacts too"
assert_match "$(sed -n '/^=== list$/,/^===/p' "$out")" 'odd +enabled +http://\*\*\*@\[::1/x' "an unparsable URL loses its whole userinfo"
leaks=$(grep -n -F -- "$PW" "$out")
assert_eq "$leaks" "" "the password appears in no output"
[ -z "$leaks" ] || cp "$out" "$T/outputs.log"
finish
