#!/usr/bin/env bash
# A route the daemon cannot call is a configuration error: a missing
# function, one of the wrong signature, a procedure, one the daemon's role
# may not execute, a C handler and a route for the same type, a malformed
# route -- each exits 78 naming the file, the line, the route and the
# problem, before any event is claimed.
. "$(dirname "$0")/lib.sh"
ROLE="t76_runtime_$$"
trap 'cleanup; psql -X -q -d postgres -c "DROP OWNED BY $ROLE; DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1' EXIT
setup_db
q "CREATE SCHEMA app;
CREATE FUNCTION app.wrong(n integer) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE FUNCTION app.good(ev events) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE PROCEDURE app.proc(ev events) LANGUAGE sql AS 'SELECT';
CREATE FUNCTION app.secret(ev events) RETURNS void LANGUAGE sql AS 'SELECT';
REVOKE EXECUTE ON FUNCTION app.secret(events) FROM PUBLIC;
CREATE ROLE $ROLE LOGIN;
GRANT USAGE ON SCHEMA public, app TO $ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $ROLE;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO $ROLE;"
q "INSERT INTO events (event_type, payload) VALUES ('app.x', '{}')"

# start NAME EXPECTED-ERROR-REGEX conf-lines...
expect_78() {
	local name=$1 want=$2 rc
	shift 2
	conf "$T/$name.conf" 'workers = 1;' "$@"
	timeout 20 "$BIN" -c "$T/$name.conf" run >"$T/$name.log" 2>&1
	rc=$?
	assert_eq $rc 78 "$name: exit 78"
	assert_match "$(cat "$T/$name.log")" "$want" "$name: the error says what is wrong"
}
route() { printf 'routes = (\n  { events = ["app.*"]; call = "%s"; }\n);' "$1"; }

expect_78 missing "$T/missing.conf:3: routes\[1\]\.call: app\.nope: function app\.nope\(events\) does not exist" "$(route app.nope)"
expect_78 signature "routes\[1\]\.call: app\.wrong: wrong signature: a routed function takes one argument of type events, found only app\.wrong\(integer\)" "$(route app.wrong)"
expect_78 procedure "procedure.conf:3: routes\[1\]\.call: app\.proc: app\.proc is a procedure, not a function" "$(route app.proc)"
expect_78 noexec "routes\[1\]\.call: app\.secret: role $ROLE may not execute it" \
	"database = { conninfo = \"user=$ROLE\"; };" "$(route app.secret)"
assert_eq "$(q "SELECT count(*) FROM events WHERE processed OR attempts > 0")" 0 "no event was claimed by a daemon that refused to start"

# Caught by the file alone (check-config too): a C handler and a route for one type.
conf "$T/both.conf" 'routes = (' '  { events = ["app.ok"]; call = "app.good"; },' \
	'  { events = ["test.*"]; call = "app.good"; }' ');'
out=$("$BIN" -c "$T/both.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "C handler and route for one type: exit 78"
assert_match "$out" "$T/both.conf:3: routes\[2\]\.events: event type test\.[a-z_]+ has both the C handler test_[a-z_]+ \(pack test\) and the SQL route app\.good" "it names both"
conf "$T/dup.conf" 'routes = (' '  { events = ["app.ok"]; call = "app.good"; },' \
	'  { events = ["app.ok"]; call = "app.other"; }' ');'
out=$("$BIN" -c "$T/dup.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "a pattern in two routes: exit 78"
assert_match "$out" "dup.conf:3: routes\[2\]\.events: pattern \"app\.ok\" is also in routes\[1\]" "it names both routes"
conf "$T/args.conf" 'routes = ( { events = ["app.ok"]; call = "app.good(events); DROP TABLE events"; } );'
out=$("$BIN" -c "$T/args.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "a call with SQL in it: exit 78"
assert_match "$out" 'args.conf:1: routes\[1\]\.call: .* is not a function name' "it says it is not a function name"
conf "$T/nokey.conf" 'routes = ( { events = ["app.ok"]; func = "app.good"; } );'
out=$("$BIN" -c "$T/nokey.conf" check-config 2>&1); rc=$?
assert_eq $rc 78 "an unknown key in a route: exit 78"
assert_match "$out" 'nokey.conf:1: routes\[1\]\.func: unknown key' "it names the key"

# And the good one starts.
conf "$T/good.conf" 'workers = 1;' "$(route app.good)"
"$BIN" -c "$T/good.conf" run --once >"$T/good.log" 2>&1
assert_eq $? 0 "a callable route: run --once exits 0"
assert_eq "$(q "SELECT processed FROM events WHERE event_type = 'app.x'")" t "and handles the event"
finish
