#!/usr/bin/env bash
# kill -9 in the middle of ordered processing, then a restart: every event
# handled exactly once, every key in order, never two of a key at once.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 3;' 'batch_size = 100;' 'ordering = { by_aggregate = [ "test.ordered" ]; };'
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('k' || k)::uuid,
          jsonb_build_object('key', 'k' || k, 'n', i, 'ms', 1 + (random() * 2)::int),
          timestamptz '2026-01-01' + i * interval '1 ms'
   FROM generate_series(1, 50) k, generate_series(1, 80) i ORDER BY random()"
start_daemon a "$T/a.conf"; A=$DPID
start_daemon b "$T/a.conf"; B=$DPID
wait_for "SELECT count(*) >= 1000 FROM test_spans" t 30 || die "no progress"
kill -9 $A
wait $A 2>/dev/null
log "killed a with $(q 'SELECT count(*) FROM pgeventd_inflight') events in hand"
start_daemon a2 "$T/a.conf"; A2=$DPID
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 50 || die "not drained after the restart"
assert_eq "$(q 'SELECT count(*) FROM test_spans')" 4000 "every event handled"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_spans')" 4000 "exactly once"
assert_eq "$(q "SELECT count(*) FROM (SELECT n, lag(n) OVER w AS p FROM test_spans
   WINDOW w AS (PARTITION BY key ORDER BY started_at, seq)) x WHERE p > n")" 0 "every key in order"
assert_eq "$(q "SELECT count(*) FROM (SELECT started_at, lag(ended_at) OVER w AS prev_end
   FROM test_spans WINDOW w AS (PARTITION BY key ORDER BY started_at, seq)) x
   WHERE started_at < prev_end")" 0 "never two events of a key at once"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 0 "no dead letters"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_keys')" 0 "no key rows left"
wait_for "SELECT count(*) FROM pgeventd_inflight" 0 5 || fail "crash marks left"
stop_daemon $B; stop_daemon $A2
# Crash-marked ordered heads (their last run never finished) while
# unordered events keep every claim busy: ordered rows come after the
# unordered ones, yet a key's suspect head runs alone at once -- or is
# dead-lettered, having taken the process down max_attempts times -- rather
# than wait for the unordered backlog to drain.
conf "$T/s.conf" 'workers = 1;' 'batch_size = 10;' 'max_attempts = 3;' \
	'ordering = { by_aggregate = [ "test.ordered" ]; };'
q "INSERT INTO events (event_type, payload, created_at)
   SELECT 'test.slow', '{\"ms\": 20}', now() - interval '1 min' FROM generate_series(1, 400)"
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5(k)::uuid, jsonb_build_object('key', k, 'n', i),
          now() - interval '2 min' + i * interval '1 ms'
   FROM unnest(ARRAY['suspect', 'killer']) k, generate_series(0, 1) i"
q "INSERT INTO pgeventd_inflight (event_id, runs)
   SELECT id, CASE payload->>'key' WHEN 'suspect' THEN 1 ELSE 3 END FROM events
   WHERE event_type = 'test.ordered' AND payload->>'n' = '0' AND NOT processed"
start_daemon s "$T/s.conf"; S=$DPID
wait_for "SELECT count(*) FROM test_spans WHERE key = 'suspect'" 2 4 || fail "a suspect head of an ordered key runs (and its key goes on) while unordered events flow"
wait_for "SELECT count(*) FROM event_dead_letters WHERE error_message LIKE 'handler crashed%'" 1 4 || fail "a head that crashed max_attempts times is dead-lettered while unordered events flow"
assert_eq "$(q "SELECT count(*) > 100 FROM events WHERE event_type = 'test.slow' AND NOT processed")" t "(with the unordered backlog still there)"
assert_eq "$(q "SELECT count(*) FROM test_spans WHERE key = 'killer'")" 0 "the crashing head did not run again"
wait_for "SELECT count(*) FROM events WHERE event_type = 'test.slow' AND NOT processed" 0 30 || fail "backlog not drained"
assert_eq "$(q "SELECT count(*) FROM pgeventd_keys WHERE parked_event IS NOT NULL")" 1 "its key parks behind it"
stop_daemon $S
# Crash marks go on the events about to run only: a key's followers held
# behind its RETRYing head are not counted as runs that never finished when
# a later event of the batch takes the process down.
q "DELETE FROM pgeventd_inflight"
conf "$T/h.conf" 'workers = 1;' 'batch_size = 100;' 'max_attempts = 3;' \
	'ordering = { by_aggregate = [ "test.ordered", "test.flaky", "test.crash" ]; };'
HELD=$(q "SELECT md5('held')::uuid")
# a key after the held one in the claim's order, in the same admission partition
CRASH=$(q "SELECT a FROM (SELECT md5('crash' || i)::uuid AS a FROM generate_series(1, 200) i) x
   WHERE hashtext('a:acct:' || a) & 7 = hashtext('a:acct:$HELD') & 7 AND 'a:acct:' || a > 'a:acct:$HELD' LIMIT 1")
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT CASE WHEN i = 0 THEN 'test.flaky' ELSE 'test.ordered' END, 'acct', '$HELD',
          jsonb_build_object('key', 'held', 'n', i, 'fail_times', 9), now() - interval '1 min' + i * interval '1 ms'
   FROM generate_series(0, 3) i"
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   VALUES ('test.crash', 'acct', '$CRASH', '{}', now() - interval '1 min')"
"$BIN" -c "$T/h.conf" run --once >"$T/h.log" 2>&1
assert_eq "$(q "SELECT count(*) FROM pgeventd_inflight m JOIN events e ON e.id = m.event_id WHERE e.event_type = 'test.crash'")" 1 "the crashing event is marked"
assert_eq "$(q "SELECT count(*) FROM pgeventd_inflight m JOIN events e ON e.id = m.event_id WHERE e.payload->>'key' = 'held' AND e.payload->>'n' <> '0'")" 0 "the followers held behind a RETRY head are not"
finish
