#!/usr/bin/env bash
# PostgreSQL restarted under a running daemon: it reconnects and finishes
# all events, including those inserted after the restart.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 2;' 'batch_size = 5;'
insert_events test.slow 200 "'{\"ms\": 5}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) > 10 FROM events WHERE processed" t 20 || die "no progress"
. "$PGEVENTD_SRCDIR/scripts/pg-cluster.sh"
pgc_restart || die "pg_ctl restart"
log "PostgreSQL restarted"
insert_events test.effect 100 "'{}'"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 60 || die "not finished after restart"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 300 "every event handled"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_effects')" 300 "none twice"
assert_match "$(cat "$T/a.log")" 'database connection lost' "the loss was logged"
assert_match "$(cat "$T/a.log")" 'database reconnected' "the reconnection was logged"
kill -0 $DPID 2>/dev/null && log "ok: daemon still running" || fail "daemon died"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
