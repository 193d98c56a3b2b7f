#!/usr/bin/env bash
# SIGTERM during a slow batch: the batch completes, exit status 0.
# A second signal rolls the batch back. kill -9 mid-batch, then restart:
# every event handled, none twice.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'batch_size = 10;'

# 1. SIGTERM while a batch of 3 x 700 ms handlers runs
insert_events test.slow 3 "'{\"ms\": 700}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM pgeventd_inflight" 3 10 || die "batch did not start"
kill -TERM $DPID
wait $DPID; assert_eq $? 0 "SIGTERM mid-batch: exit 0"
assert_eq "$(q 'SELECT count(*) FROM events WHERE processed')" 3 "the batch in hand completed"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 3 "its effects committed"
assert_match "$(cat "$T/a.log")" 'shutting down: finishing the batches in hand' "shutdown logged"

# 2. a second signal rolls back
insert_events test.slow 3 "'{\"ms\": 700}'"
start_daemon b "$T/a.conf"
wait_for "SELECT count(*) FROM pgeventd_inflight" 3 10 || die "batch did not start"
kill -TERM $DPID; sleep 0.2; kill -TERM $DPID
wait $DPID; assert_eq $? 1 "second signal: exit 1"
assert_eq "$(q 'SELECT count(*) FROM events WHERE NOT processed')" 3 "the batch was rolled back, events stay unprocessed"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_inflight')" 0 "a chosen rollback is not counted as a crash"
q "DELETE FROM events"; q "DELETE FROM test_effects"

# 3. kill -9 mid-batch, restart
insert_events test.slow 60 "'{\"ms\": 40}'"
start_daemon c "$T/a.conf"
wait_for "SELECT count(*) > 0 FROM events WHERE processed" t 20 || die "no progress"
wait_for "SELECT count(*) > 0 FROM pgeventd_inflight" t 10 || die "no batch in hand"
kill -9 $DPID; wait $DPID 2>/dev/null
done_before=$(q 'SELECT count(*) FROM events WHERE processed')
log "killed with $done_before of 60 processed"
[ "$done_before" -lt 60 ] || fail "kill came too late to test anything"
start_daemon d "$T/a.conf"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 60 || die "not finished after restart"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 60 "every event handled"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_effects')" 60 "none twice"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 0 "one kill dead-letters nothing"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_inflight')" 0 "crash marks cleared after the re-run"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
