#!/usr/bin/env bash
# A key whose head RETRYs waits (its later events with it) while every
# other key drains; then the head succeeds and the key drains in order.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 4;' 'max_attempts = 5;' \
	'backoff = { base_ms = 2000; factor = 1.5; cap_ms = 5000; jitter = 0.0; };' \
	'ordering = { by_aggregate = [ "test.ordered" ]; };'
# key "slow": its head fails twice (waits 2 s, then 3 s); 20 events follow it.
# 50 other keys x 20 events. All created before the daemon starts.
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('slow')::uuid,
          jsonb_build_object('key', 'slow', 'n', i, 'fail_times', CASE WHEN i = 0 THEN 2 ELSE 0 END),
          timestamptz '2026-01-01' + i * interval '1 ms'
   FROM generate_series(0, 20) i"
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('k' || k)::uuid, jsonb_build_object('key', 'k' || k, 'n', i),
          timestamptz '2026-01-01' + i * interval '1 ms'
   FROM generate_series(1, 50) k, generate_series(0, 19) i"
start_daemon a "$T/a.conf"; A=$DPID
wait_for "SELECT count(*) FROM test_spans WHERE key <> 'slow'" 1000 15 || die "other keys did not drain"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 21 "the retrying key waits whole: its head and the 20 behind it"
assert_eq "$(q "SELECT attempts FROM events WHERE payload->>'key' = 'slow' AND payload->>'n' = '0'")" 1 "while its head is in backoff"
assert_eq "$(q "SELECT count(*) FROM test_spans WHERE key = 'slow'")" 0 "nothing of the key ran past its head"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 20 || die "the slow key did not drain"
assert_eq "$(q "SELECT string_agg(n::text, ',' ORDER BY started_at, seq) FROM test_spans WHERE key = 'slow'")" \
	"$(seq -s, 0 20)" "then the key drained in order, head first"
assert_eq "$(q "SELECT attempt FROM test_spans WHERE key = 'slow' AND n = 0")" 3 "the head succeeded on its third attempt"
assert_eq "$(q "SELECT count(*) FROM (SELECT key, n, lag(n) OVER (PARTITION BY key ORDER BY started_at, seq) p FROM test_spans) x WHERE p > n")" 0 "every key in order"
stop_daemon $A
# Ordering turned off (no ordered types configured) with a key still
# queued behind its retrying head: the key's events still run, in order,
# once its head is due again -- nothing is stranded under the key.
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('off')::uuid,
          jsonb_build_object('key', 'off', 'n', i, 'fail_times', CASE WHEN i = 0 THEN 1 ELSE 0 END),
          now() - interval '1 min' + i * interval '1 ms'
   FROM generate_series(0, 5) i"
"$BIN" -c "$T/a.conf" run --once >"$T/once.log" 2>&1
assert_eq "$(q "SELECT count(*) FROM events WHERE payload->>'key' = 'off' AND NOT processed AND pgeventd_key IS NOT NULL")" 6 "the key's events are queued behind its retrying head"
conf "$T/off.conf" 'workers = 2;' 'max_attempts = 5;' \
	'backoff = { base_ms = 2000; factor = 1.5; cap_ms = 5000; jitter = 0.0; };'
start_daemon off "$T/off.conf"; OFF=$DPID
wait_for "SELECT count(*) FROM events WHERE payload->>'key' = 'off' AND NOT processed" 0 10 || fail "with ordering off, a queued key's events still run"
assert_eq "$(q "SELECT string_agg(n::text, ',' ORDER BY started_at, seq) FROM test_spans WHERE key = 'off'")" "0,1,2,3,4,5" "in their key's order"
wait_for "SELECT count(*) FROM pgeventd_keys" 0 5 || fail "and the key's row goes"
stop_daemon $OFF
finish
