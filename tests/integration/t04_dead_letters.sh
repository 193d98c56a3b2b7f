#!/usr/bin/env bash
# An always-failing handler is dead-lettered after max_attempts with its
# error; a permanent failure is dead-lettered on attempt 1.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'max_attempts = 3;' 'backoff = { base_ms = 50; factor = 2.0; };' 'poll_interval_ms = 50;'
F=$(q "INSERT INTO events (event_type, payload) VALUES ('test.fail', '{}') RETURNING id")
P=$(q "INSERT INTO events (event_type, payload) VALUES ('test.permanent', '{\"k\": 1}') RETURNING id")
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM events WHERE processed" 2 20 || die "not dead-lettered"

assert_eq "$(q "SELECT attempts || '|' || last_error FROM events WHERE id = '$F'")" "3|gave up after 3 attempts: always fails" "retrying event: 3 attempts, last error"
assert_eq "$(q "SELECT event_type || '|' || error_message || '|' || retry_count || '|' || attempts || '|' || handler FROM event_dead_letters WHERE event_id = '$F'")" \
	"test.fail|gave up after 3 attempts: always fails|2|3|test_fail" "dead letter of the retrying event"
assert_eq "$(q "SELECT attempts || '|' || last_error FROM events WHERE id = '$P'")" "1|permanently broken" "permanent failure: 1 attempt"
assert_eq "$(q "SELECT error_message || '|' || retry_count || '|' || (payload = '{\"k\": 1}') || '|' || (original_created_at = (SELECT created_at FROM events WHERE id = '$P')) FROM event_dead_letters WHERE event_id = '$P'")" \
	"permanently broken|0|true|true" "dead letter keeps payload and original created_at"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 2 "one dead letter each"
assert_match "$(grep "event_id=$P" "$T/a.log")" 'level=error .*outcome=dead_letter error="permanently broken"' "dead letter logged"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
