#!/usr/bin/env bash
# 10,000 events, two pgeventd processes with 2 workers each: every event
# handled exactly once, all processed.
. "$(dirname "$0")/lib.sh"
setup_db
LOG_LEVEL=warning conf "$T/a.conf" 'workers = 2;' 'batch_size = 100;'
insert_events test.effect 10000 "jsonb_build_object('n', generate_series)"

start_daemon a "$T/a.conf"; A=$DPID
start_daemon b "$T/a.conf"; B=$DPID
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 180 || die "events left unprocessed"

assert_eq "$(q 'SELECT count(*) FROM test_effects')" 10000 "10,000 effect rows"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_effects')" 10000 "no event handled twice"
assert_eq "$(q 'SELECT count(*) FROM events WHERE processed AND attempts = 1 AND processed_at IS NOT NULL')" 10000 "all processed on attempt 1"
assert_eq "$(q "SELECT count(DISTINCT split_part(worker, ' ', 2)) >= 2 FROM test_effects")" t "work was shared between workers"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_inflight')" 0 "no crash marks left"
stop_daemon $A; assert_eq $? 0 "daemon a exits 0 on SIGTERM"
stop_daemon $B; assert_eq $? 0 "daemon b exits 0 on SIGTERM"
finish
