#!/usr/bin/env bash
# Ordered event types: two daemons x 4 workers drain 20,000 events over 200
# keys (random handler delays, some RETRYs). Every key's events ran in
# (created_at, id) order and never two at once; unordered events mixed in
# are all handled; nothing ran twice.
. "$(dirname "$0")/lib.sh"
setup_db
for n in a b; do
	conf "$T/$n.conf" 'workers = 4;' 'batch_size = 200;' 'max_attempts = 10;' \
		'backoff = { base_ms = 50; factor = 2.0; cap_ms = 400; jitter = 0.1; };' \
		'ordering = { by_aggregate = [ "test.ordered" ]; };'
done
# 100 events per key, created in shuffled order over a few seconds' worth of
# timestamps, with ties; 2 % RETRY once or twice, 5 % sleep up to 3 ms.
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'test.ordered', 'acct', md5('k' || k)::uuid,
          jsonb_build_object('key', 'k' || k, 'n', i,
            'fail_times', CASE WHEN random() < 0.02 THEN 1 + (random() < 0.5)::int ELSE 0 END,
            'ms', CASE WHEN random() < 0.05 THEN (random() * 3)::int ELSE 0 END),
          timestamptz '2026-01-01' + (i / 3) * interval '1 ms'
   FROM generate_series(1, 200) k, generate_series(1, 100) i ORDER BY random()"
insert_events test.effect 500 "'{}'"
start_daemon a "$T/a.conf"; A=$DPID
start_daemon b "$T/b.conf"; B=$DPID
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 50 || die "not drained"
assert_eq "$(q 'SELECT count(*) FROM test_spans')" 20000 "every ordered event handled"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_spans')" 20000 "none twice"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 500 "the unordered events too"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 0 "no dead letters"
# Order: by handler start, each key's events come in (created_at, id) order.
assert_eq "$(q "SELECT count(*) FROM (SELECT s.key, e.created_at, e.id,
     lag(e.created_at) OVER w AS pc, lag(e.id) OVER w AS pid
   FROM test_spans s JOIN events e ON e.id = s.event_id
   WINDOW w AS (PARTITION BY s.key ORDER BY s.started_at, s.seq)) x
   WHERE pc IS NOT NULL AND (pc, pid) > (created_at, id)")" 0 "every key handled in (created_at, id) order"
assert_eq "$(q "SELECT count(*) FROM (SELECT started_at, lag(ended_at) OVER w AS prev_end
   FROM test_spans WINDOW w AS (PARTITION BY key ORDER BY started_at, seq)) x
   WHERE started_at < prev_end")" 0 "never two events of a key at once"
assert_eq "$(q "SELECT count(*) > 0 FROM test_spans WHERE attempt > 1")" t "some events ran after a RETRY"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_keys')" 0 "no key rows left"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_inflight')" 0 "no crash marks left"
grep -q "event handled.*outcome=ok" "$T/a.log" && grep -q "event handled.*outcome=ok" "$T/b.log"
assert_eq $? 0 "both daemons handled events"
stop_daemon $A; stop_daemon $B
finish
