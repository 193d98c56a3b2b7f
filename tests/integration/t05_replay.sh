#!/usr/bin/env bash
# Replay: UPDATE events SET processed = false -> handled again, attempts
# reset; a dead-lettered event can be replayed the same way.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'max_attempts = 2;' 'backoff = { base_ms = 50; };'
E=$(q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}') RETURNING id")
D=$(q "INSERT INTO events (event_type, payload) VALUES ('test.flaky', '{\"fail_times\": 2}') RETURNING id")
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM events WHERE processed" 2 20 || die "first pass"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters WHERE event_id = '$D'")" 1 "flaky event dead-lettered after 2 attempts"

# The DBA's replay, while the daemon runs (the trigger NOTIFYs it).
# RETURNING shows the row as the replay trigger left it (the daemon may
# handle it again a moment later).
got=$(q "UPDATE events SET processed = false WHERE id IN ('$E', '$D') RETURNING CASE WHEN id = '$D' THEN attempts || '|' || coalesce(last_error, '-') || '|' || coalesce(processed_at::text, '-') || '|' || CASE WHEN next_attempt_at <= clock_timestamp() THEN 'due' ELSE coalesce(next_attempt_at::text, '-') END END" | grep '|')
assert_eq "$got" "0|-|-|due" "replay resets attempts, last_error, processed_at, and makes it due now"
wait_for "SELECT count(*) FROM test_effects WHERE event_id = '$E'" 2 10 || fail "replayed event not handled again"
assert_eq "$(q "SELECT attempts FROM events WHERE id = '$E'")" 1 "attempts reset then 1"
# fail_times = 2: attempt 1 fails again, attempt 2 fails, dead again (attempts restarted at 1)
wait_for "SELECT count(*) FROM event_dead_letters WHERE event_id = '$D'" 2 10 || fail "replayed dead letter not re-run"
assert_eq "$(q "SELECT attempts FROM events WHERE id = '$D'")" 2 "replayed dead letter ran max_attempts again"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
