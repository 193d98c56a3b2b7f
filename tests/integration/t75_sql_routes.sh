#!/usr/bin/env bash
# SQL routes: an event type routed to a PostgreSQL function runs it inside
# the batch transaction. A normal return is OK; SQLSTATE PGR01 asks for a
# retry; a transient SQLSTATE (here 40001) is a retry with backoff; any
# other is a dead letter whose message holds SQLSTATE, message, detail and
# hint; a function that writes and then fails leaves no writes; a run of
# events taken in one statement still gets one outcome each. Routed types
# are in /health's registry, the metrics and check-config --print.
. "$(dirname "$0")/lib.sh"
setup_db
q "CREATE SCHEMA app;
CREATE TABLE app.seen (event_id uuid, n int);
CREATE FUNCTION app.ok(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO app.seen VALUES (ev.id, (ev.payload->>'n')::int); END \$\$;
CREATE FUNCTION app.retry_me(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.seen VALUES (ev.id, -1);
  IF ev.attempts = 0 THEN
    RAISE EXCEPTION 'not yet' USING ERRCODE = 'PGR01';
  END IF;
END \$\$;
CREATE FUNCTION app.transient(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END \$\$;
CREATE FUNCTION app.slow(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO app.seen VALUES (ev.id, 0); PERFORM pg_sleep(3); END \$\$;
CREATE FUNCTION app.broken(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.seen VALUES (ev.id, 99);
  RAISE EXCEPTION 'rating must be 1..5' USING ERRCODE = '22023', DETAIL = 'got 9', HINT = 'fix the producer';
END \$\$;"
conf "$T/a.conf" 'workers = 1;' 'max_attempts = 3;' 'handler_timeout_ms = 1000;' \
	'backoff = { base_ms = 300; cap_ms = 300; jitter = 0.0; };' \
	'health = { listen = "127.0.0.1:0"; };' \
	'routes = (' \
	'  { events = ["app.ok", "app.ok.*"]; call = "app.ok"; },' \
	'  { events = ["app.retry"]; call = "app.retry_me"; },' \
	'  { events = ["app.transient"]; call = "app.transient"; },' \
	'  { events = ["app.slow"]; call = "app.slow"; },' \
	'  { events = ["app.broken"]; call = "app.broken"; }' \
	');'

out=$("$BIN" -c "$T/a.conf" check-config --print 2>&1)
assert_match "$out" $'^routes +reload +6 patterns' "check-config --print: the routes key"
assert_match "$out" '^app\.ok\.\* +sql +app\.ok \(routes\[1\], line [0-9]+\)' "check-config --print: a route marked sql"
assert_match "$out" '^test\.effect +c +test_effect \(pack test\)' "check-config --print: a C handler marked c"

start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "no health port"
wait_log a 'msg="SQL route" route=app.broken' 10 || die "routes not resolved at start"

# OK, and a run of events of one route: each gets its effect once, in order.
q "INSERT INTO events (event_type, payload) SELECT 'app.ok.bulk', jsonb_build_object('n', i) FROM generate_series(1, 50) i"
OK1=$(q "INSERT INTO events (event_type, payload) VALUES ('app.ok', '{\"n\": 1000}') RETURNING id")
wait_for "SELECT count(*) FROM events WHERE event_type LIKE 'app.ok%' AND processed" 51 10 || fail "routed events not processed"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE n BETWEEN 1 AND 50")" 50 "each event of the run has its effect"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE event_id = '$OK1'")" 1 "a single event has its effect once"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 0 "no dead letter"

# Explicit retry (PGR01): retried, the attempt's writes rolled back, then OK.
R=$(q "INSERT INTO events (event_type, payload) VALUES ('app.retry', '{}') RETURNING id")
wait_for "SELECT processed FROM events WHERE id = '$R'" t 10 || fail "the retried event never succeeded"
assert_eq "$(q "SELECT attempts FROM events WHERE id = '$R'")" 2 "PGR01: one retry, then OK"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE event_id = '$R'")" 1 "the failed attempt's write was rolled back"
assert_match "$(grep "event_id=$R" "$T/a.log" | head -n 1)" 'outcome=retry.*SQLSTATE PGR01: not yet' "logged as a retry with its SQLSTATE"

# Transient SQLSTATE: retried with backoff until max_attempts, then dead.
TR=$(q "INSERT INTO events (event_type, payload) VALUES ('app.transient', '{}') RETURNING id")
wait_for "SELECT attempts FROM events WHERE id = '$TR'" 1 5 || fail "transient: no first attempt"
assert_eq "$(q "SELECT processed FROM events WHERE id = '$TR'")" f "40001: a retry, not a dead letter"
wait_log a "event_id=$TR .*outcome=retry" 5 || fail "transient: no retry logged"
assert_match "$(grep "event_id=$TR" "$T/a.log" | head -n 1)" 'attempt=1 .*outcome=retry retry_in_ms=300 ' "40001: retried after the backoff delay"
wait_for "SELECT count(*) FROM event_dead_letters WHERE event_id = '$TR'" 1 10 || fail "transient: never gave up"
assert_match "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$TR'")" \
	'^gave up after 3 attempts: function app.transient: SQLSTATE 40001: could not serialize' "gave up after max_attempts"

# The handler time limit (57014) is a retry too, and the writes are undone.
S=$(q "INSERT INTO events (event_type, payload) VALUES ('app.slow', '{}') RETURNING id")
wait_for "SELECT attempts >= 1 FROM events WHERE id = '$S'" t 10 || fail "slow: never stopped"
assert_match "$(q "SELECT last_error FROM events WHERE id = '$S'")" \
	'^handler time limit exceeded \(handler_timeout_ms = 1000\): function app\.slow: SQLSTATE 57014: canceling statement due to statement timeout' \
	"57014 from the time limit: a retry that names the limit"
assert_eq "$(q "SELECT processed FROM events WHERE id = '$S'")" f "the slow event is not dead-lettered"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE event_id = '$S'")" 0 "its write was rolled back"
q "UPDATE events SET processed = true WHERE id = '$S'"

# Permanent: dead-lettered at once with SQLSTATE, message, detail, hint; no writes.
B=$(q "INSERT INTO events (event_type, payload) VALUES ('app.broken', '{}') RETURNING id")
wait_for "SELECT count(*) FROM event_dead_letters WHERE event_id = '$B'" 1 10 || fail "permanent: not dead-lettered"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$B'")" \
	'function app.broken: SQLSTATE 22023: rating must be 1..5 (detail: got 9; hint: fix the producer)' \
	"the dead letter holds SQLSTATE, message, detail and hint"
assert_eq "$(q "SELECT handler FROM event_dead_letters WHERE event_id = '$B'")" sql:app.broken "the dead letter names the route"
assert_eq "$(q "SELECT attempts FROM events WHERE id = '$B'")" 1 "dead-lettered on the first attempt"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE event_id = '$B'")" 0 "its write before the error was rolled back"

# A run that holds a failing event: the others still get their effect once.
q "INSERT INTO events (event_type, payload) SELECT CASE WHEN i = 5 THEN 'app.broken' ELSE 'app.ok.mix' END, jsonb_build_object('n', 100 + i) FROM generate_series(1, 10) i"
wait_for "SELECT count(*) FROM events WHERE (payload->>'n')::int BETWEEN 101 AND 110 AND processed" 10 10 || fail "mixed run not processed"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE n BETWEEN 101 AND 110")" 9 "the 9 OK events of a mixed run have their effect once"

# Hostile type and payload: quotes and semicolons never reach SQL text.
H=$(q "INSERT INTO events (event_type, payload) VALUES ('app.ok.x''); DROP TABLE app.seen; --', '{\"n\": 7, \"x\": \"'';DROP TABLE app.seen;--\"}') RETURNING id")
wait_for "SELECT processed FROM events WHERE id = '$H'" t 10 || fail "hostile event not processed"
assert_eq "$(q "SELECT count(*) FROM app.seen WHERE event_id = '$H'")" 1 "the hostile event ran its function like any other"
assert_eq "$(q "SELECT to_regclass('app.seen') IS NOT NULL")" t "app.seen is still there"

# Observability.
pyj() { python3 -c "import json; d = json.load(open('$1')); print($2)"; }
http_get "$PORT" /health >"$T/health.json"
assert_eq "$(pyj "$T/health.json" '[r for r in d["registry"] if r["event_type"] == "app.ok.*"][0]["kind"]')" sql "/health registry: the route, kind sql"
assert_eq "$(pyj "$T/health.json" '[r for r in d["registry"] if r["event_type"] == "app.ok.*"][0]["handler"]')" sql:app.ok "/health registry: its handler"
assert_eq "$(pyj "$T/health.json" '[r for r in d["registry"] if r["event_type"] == "test.effect"][0]["kind"]')" c "/health registry: C handlers are kind c"
http_get "$PORT" /metrics >"$T/metrics.txt"
assert_match "$(cat "$T/metrics.txt")" 'pgeventd_events_total\{event_type="app\.ok\.\*",outcome="ok"\} 6[0-9]' "metrics: events counted under the route's pattern"
assert_match "$(cat "$T/metrics.txt")" 'pgeventd_sql_route\{event_type="app\.ok\.\*",function="app\.ok"\} 1' "metrics: the pattern marked as a SQL route"
stop_daemon $DPID
assert_eq $? 0 "clean exit"
finish
