#!/usr/bin/env bash
# Routes reload on SIGHUP: a reload that adds a route and removes another
# applies at once (the new type runs its function, the removed type has
# no handler any more); a reload naming a function that does not exist is
# rejected whole and the routes in force stay; /health follows.
. "$(dirname "$0")/lib.sh"
setup_db
q "CREATE SCHEMA app;
CREATE TABLE app.calls (fn text, event_id uuid);
CREATE FUNCTION app.fa(ev events) RETURNS void LANGUAGE sql AS \$\$ INSERT INTO app.calls VALUES ('fa', ev.id) \$\$;
CREATE FUNCTION app.fb(ev events) RETURNS void LANGUAGE sql AS \$\$ INSERT INTO app.calls VALUES ('fb', ev.id) \$\$;"
common=('workers = 1;' 'unknown_event_policy = "skip";' 'health = { listen = "127.0.0.1:0"; };')
conf "$T/a.conf" "${common[@]}" 'routes = ( { events = ["app.a"]; call = "app.fa"; } );'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "no health port"
A1=$(q "INSERT INTO events (event_type, payload) VALUES ('app.a', '{}') RETURNING id")
B1=$(q "INSERT INTO events (event_type, payload) VALUES ('app.b', '{}') RETURNING id")
wait_for "SELECT count(*) FROM events WHERE processed AND id IN ('$A1', '$B1')" 2 10 || fail "first events not handled"
assert_eq "$(q "SELECT fn FROM app.calls WHERE event_id = '$A1'")" fa "before: app.a runs app.fa"
assert_eq "$(q "SELECT last_error FROM events WHERE id = '$B1'")" "no handler registered for event type app.b" "before: app.b has no handler"

# Add app.b -> app.fb, remove app.a.
conf "$T/a.conf" "${common[@]}" 'routes = ( { events = ["app.b"]; call = "app.fb"; } );'
kill -HUP $DPID
wait_log a 'msg="SIGHUP: configuration re-read"' 10 || die "reload not logged"
assert_match "$(grep 'SIGHUP: changed key applied' "$T/a.log")" 'key=routes' "the reload says routes changed"
A2=$(q "INSERT INTO events (event_type, payload) VALUES ('app.a', '{}') RETURNING id")
B2=$(q "INSERT INTO events (event_type, payload) VALUES ('app.b', '{}') RETURNING id")
wait_for "SELECT count(*) FROM events WHERE processed AND id IN ('$A2', '$B2')" 2 10 || fail "events after the reload not handled"
assert_eq "$(q "SELECT fn FROM app.calls WHERE event_id = '$B2'")" fb "after: app.b runs app.fb"
assert_eq "$(q "SELECT count(*) FROM app.calls WHERE event_id = '$A2'")" 0 "after: app.a runs nothing"
assert_eq "$(q "SELECT last_error FROM events WHERE id = '$A2'")" "no handler registered for event type app.a" "after: app.a has no handler"
http_get "$PORT" /health >"$T/h1.json"
assert_eq "$(python3 -c "import json; print(sorted(r['event_type'] for r in json.load(open('$T/h1.json'))['registry'] if r['kind'] == 'sql'))")" "['app.b']" "/health lists the new routes only"
http_get "$PORT" /metrics >"$T/m1.txt"
assert_match "$(cat "$T/m1.txt")" 'pgeventd_sql_route\{event_type="app\.a",function="app\.fa"\} 0' "metrics: the removed route at 0"
assert_match "$(cat "$T/m1.txt")" 'pgeventd_sql_route\{event_type="app\.b",function="app\.fb"\} 1' "metrics: the added route at 1"

# A reload naming a missing function is rejected; app.b keeps app.fb.
conf "$T/a.conf" "${common[@]}" 'routes = ( { events = ["app.b"]; call = "app.gone"; } );'
kill -HUP $DPID
wait_log a 'SIGHUP: new configuration rejected' 10 || die "bad reload not rejected"
assert_match "$(grep 'SIGHUP: new configuration rejected' "$T/a.log")" 'routes\[1\]\.call: app\.gone: function app\.gone\(events\) does not exist' "the rejection names the route, the function and the problem"
B3=$(q "INSERT INTO events (event_type, payload) VALUES ('app.b', '{}') RETURNING id")
wait_for "SELECT processed FROM events WHERE id = '$B3'" t 10 || fail "event after the rejected reload not handled"
assert_eq "$(q "SELECT fn FROM app.calls WHERE event_id = '$B3'")" fb "the routes in force stayed"

# packs need a restart: a reload that drops the test pack and routes one of
# its types is checked against the packs that stay, and rejected.
conf "$T/a.conf" 'packs = [];' "${common[@]}" 'routes = ( { events = ["test.effect"]; call = "app.fb"; } );'
kill -HUP $DPID
wait_log a 'SIGHUP: new configuration rejected' 10 2 || fail "a route taking a running C handler's type not rejected"
assert_match "$(grep 'SIGHUP: new configuration rejected' "$T/a.log" | tail -1)" 'event type test.effect has both the C handler' "the rejection names the C handler the running packs keep"
B4=$(q "INSERT INTO events (event_type, payload) VALUES ('app.b', '{}') RETURNING id")
wait_for "SELECT processed FROM events WHERE id = '$B4'" t 10 || fail "event after the second rejected reload not handled"
assert_eq "$(q "SELECT fn FROM app.calls WHERE event_id = '$B4'")" fb "the routes in force stayed"
kill -0 $DPID 2>/dev/null && log "ok: the daemon runs on" || fail "the daemon died"
stop_daemon $DPID
assert_eq $? 0 "clean exit"
finish
