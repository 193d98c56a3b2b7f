#!/usr/bin/env bash
# A handler that fails twice then succeeds: attempts = 3, processed, and
# the gaps between attempts follow the configured backoff within jitter.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'max_attempts = 5;' \
	'backoff = { base_ms = 600; factor = 2.0; jitter = 0.1; };' \
	'poll_interval_ms = 60000;' # retries must wake the worker, not the poll
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"
ID=$(q "INSERT INTO events (event_type, payload) VALUES ('test.flaky', '{\"fail_times\": 2}') RETURNING id")
wait_for "SELECT processed FROM events WHERE id = '$ID'" t 20 || die "flaky event not processed"

assert_eq "$(q "SELECT attempts FROM events WHERE id = '$ID'")" 3 "attempts = 3"
assert_eq "$(q "SELECT last_error IS NULL FROM events WHERE id = '$ID'")" t "last_error cleared on success"
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_id = '$ID'")" 1 "effect written once"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 0 "not dead-lettered"

# Attempt times from the outcome log lines (ts=...Z ... attempt=N).
ts() { grep "event_id=$ID" "$T/a.log" | grep "attempt=$1 " | sed -n 's/^ts=\([^ ]*\) .*/\1/p' | head -1; }
ms() { date -d "$1" +%s%3N; }
t1=$(ms "$(ts 1)"); t2=$(ms "$(ts 2)"); t3=$(ms "$(ts 3)")
g1=$((t2 - t1)); g2=$((t3 - t2))
log "gaps: ${g1} ms, ${g2} ms (backoff 600 ms then 1200 ms, +-10 %)"
# lower bound: delay minus jitter; upper: delay plus jitter plus claim latency
[ "$g1" -ge 540 ] && [ "$g1" -le 960 ] && log "ok: first gap within 540..960 ms" || fail "first gap $g1 ms"
[ "$g2" -ge 1080 ] && [ "$g2" -le 1620 ] && log "ok: second gap within 1080..1620 ms" || fail "second gap $g2 ms"
assert_match "$(grep "event_id=$ID" "$T/a.log" | grep 'attempt=1 ')" 'outcome=retry retry_in_ms=[0-9]+ error="flaky: failing attempt 1 of 2"' "retry logged with delay and error"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
