#!/usr/bin/env bash
# FIFO: with one worker, handling order equals (created_at, id) order,
# including events that share a created_at.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'batch_size = 7;'
# 300 events over 60 timestamps (5 per timestamp), inserted in shuffled order
q "INSERT INTO events (event_type, payload, created_at)
   SELECT 'test.effect', jsonb_build_object('i', i), timestamptz '2026-01-01' + (i % 60) * interval '1 second'
   FROM generate_series(1, 300) i ORDER BY random()"
start_daemon a "$T/a.conf" --once
wait $DPID; assert_eq $? 0 "run --once exits 0 when nothing is due"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 300 "every event handled"
assert_eq "$(q 'SELECT (SELECT array_agg(event_id ORDER BY seq) FROM test_effects) = (SELECT array_agg(id ORDER BY created_at, id) FROM events)')" t "handled in (created_at, id) order"
finish
