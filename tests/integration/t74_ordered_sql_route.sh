#!/usr/bin/env bash
# An ordered event type routed to a SQL function (routes = ...) keeps its
# keys' order and runs each event once: a head whose function raises PGR01
# (explicit retry) holds its key while the other keys drain, and a run of
# events the route takes in one statement never runs events the batch
# holds back (a key's head in backoff behind a replayed event).
. "$(dirname "$0")/lib.sh"
setup_db
q "CREATE SCHEMA app;
CREATE TABLE app.spans (seq bigserial, key text, n int, attempt int);
CREATE FUNCTION app.ord(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  -- (a replayed event that ran before does not fail again)
  IF coalesce((ev.payload->>'fail_times')::int, 0) > ev.attempts AND NOT EXISTS (SELECT 1
     FROM app.spans s WHERE s.key = ev.payload->>'key' AND s.n = (ev.payload->>'n')::int) THEN
    RAISE EXCEPTION 'not yet' USING ERRCODE = 'PGR01';
  END IF;
  INSERT INTO app.spans (key, n, attempt)
    VALUES (ev.payload->>'key', (ev.payload->>'n')::int, ev.attempts + 1);
END \$\$;"
conf "$T/a.conf" 'workers = 4;' 'max_attempts = 5;' \
	'backoff = { base_ms = 2000; factor = 1.5; cap_ms = 5000; jitter = 0.0; };' \
	'ordering = { by_aggregate = [ "app.ord" ]; };' \
	'routes = ( { events = ["app.ord"]; call = "app.ord"; } );'
# key "slow": its head raises PGR01 twice (waits 2 s, then 3 s); 20 events
# follow it. 50 other keys x 20 events. All created before the daemon starts.
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'app.ord', 'acct', md5('slow')::uuid,
          jsonb_build_object('key', 'slow', 'n', i, 'fail_times', CASE WHEN i = 0 THEN 2 ELSE 0 END),
          timestamptz '2026-01-01' + i * interval '1 ms'
   FROM generate_series(0, 20) i"
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'app.ord', 'acct', md5('k' || k)::uuid, jsonb_build_object('key', 'k' || k, 'n', i),
          timestamptz '2026-01-01' + i * interval '1 ms'
   FROM generate_series(1, 50) k, generate_series(0, 19) i"
start_daemon a "$T/a.conf"; A=$DPID
wait_for "SELECT count(*) FROM app.spans WHERE key <> 'slow'" 1000 15 || die "other keys did not drain"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 21 "the retrying key waits whole: its head and the 20 behind it"
assert_eq "$(q "SELECT attempts FROM events WHERE payload->>'key' = 'slow' AND payload->>'n' = '0'")" 1 "while its head is in backoff"
assert_eq "$(q "SELECT count(*) FROM app.spans WHERE key = 'slow'")" 0 "the function ran nothing of the key past its head"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 20 || die "the slow key did not drain"
assert_eq "$(q "SELECT string_agg(n::text, ',' ORDER BY seq) FROM app.spans WHERE key = 'slow'")" \
	"$(seq -s, 0 20)" "then the key drained in order, head first"
assert_eq "$(q "SELECT attempt FROM app.spans WHERE key = 'slow' AND n = 0")" 3 "the head succeeded on its third attempt"
assert_eq "$(q "SELECT count(*) FROM (SELECT key, n, lag(n) OVER (PARTITION BY key ORDER BY seq) p FROM app.spans) x WHERE p > n")" 0 "every key in order"
assert_eq "$(q "SELECT count(*) FROM (SELECT key, n FROM app.spans GROUP BY 1, 2 HAVING count(*) > 1) x")" 0 "each event's function ran once"
assert_eq "$(q "SELECT count(*) FROM app.spans")" 1021 "every event ran"

# Key "r": r0 and r1 each raise PGR01 once, r2 waits behind them. r0
# retries (the key's three events join its queue), then runs, then r1
# retries. Replaying r0 now makes the key due with r0 first: the batch runs
# r0 and holds back r1 (in backoff) and r2. Routed in one statement, r1
# and r2 must not run with r0.
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'app.ord', 'acct', md5('r')::uuid,
          jsonb_build_object('key', 'r', 'n', i, 'fail_times', CASE WHEN i < 2 THEN 1 ELSE 0 END),
          timestamptz '2026-01-02' + i * interval '1 ms'
   FROM generate_series(0, 2) i"
wait_for "SELECT count(*) FROM events WHERE payload->>'key' = 'r' AND (payload->>'n' = '0' AND processed
          OR payload->>'n' = '1' AND attempts = 1)" 2 10 || die "key r's second event did not retry"
q "UPDATE events SET processed = false WHERE payload->>'key' = 'r' AND payload->>'n' = '0'"
wait_for "SELECT count(*) FROM app.spans WHERE key = 'r' AND n = 0" 2 5 || die "the replayed head did not run"
assert_eq "$(q "SELECT count(*) FROM app.spans WHERE key = 'r' AND n > 0")" 0 "what waits behind a retrying event did not run with the replayed one"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 15 || die "key r did not drain"
assert_eq "$(q "SELECT string_agg(n::text, ',' ORDER BY seq) FROM app.spans WHERE key = 'r'")" "0,0,1,2" \
	"key r: the replay, then the retried event, then the rest, each once"
stop_daemon $A
finish
