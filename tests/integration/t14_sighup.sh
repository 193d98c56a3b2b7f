#!/usr/bin/env bash
# SIGHUP re-reads the configuration: log settings apply at once, keys that
# need a restart are named, and an invalid file is rejected while the old
# configuration keeps running.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;'
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"
insert_events test.effect 1 "'{}'"
wait_log a 'msg="event handled".*outcome=ok' 10 || die "first event not logged at info"

# log.level info -> warning (reloadable), workers (needs a restart)
LOG_LEVEL=warning conf "$T/a.conf" 'workers = 3;'
kill -HUP $DPID
# (logged at notice before the new level applies)
wait_log a 'changed key not applied.*key=workers.*takes effect at the next start' 10 || die "workers not named as needing a restart"
insert_events test.effect 1 "'{}'"
insert_events test.fail 1 "'{}'"
wait_log a 'event_type=test.fail.*outcome=retry' 10 || die "warning-level outcome not logged"
wait_for "SELECT count(*) FROM test_effects" 2 10 || die "second event not handled"
assert_eq "$(grep -c 'outcome=ok' "$T/a.log")" 1 "info lines stop after the reload to warning"

# An invalid file: rejected, old configuration kept, daemon still working.
printf 'workers = 1;\nbatch_size = "many";\n' >"$T/a.conf"
kill -HUP $DPID
wait_log a 'new configuration rejected' 10 || die "bad reload not logged"
assert_match "$(grep 'new configuration rejected' "$T/a.log")" 'a.conf:2.*batch_size' "rejection names the line and key"
insert_events test.effect 1 "'{}'"
wait_for "SELECT count(*) FROM test_effects" 3 10 || fail "daemon stopped working after a bad reload"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
