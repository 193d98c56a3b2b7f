#!/usr/bin/env bash
# A handler blocked on a lock held by another session is stopped by
# handler_timeout_ms: the event is a RETRY whose error names the limit, the
# daemon is not killed and stays live, and the event succeeds once the
# lock is gone.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'handler_timeout_ms = 1000;' 'stall_timeout_ms = 5000;' \
	'backoff = { base_ms = 500; cap_ms = 500; jitter = 0.0; };' 'max_attempts = 10;' \
	'health = { listen = "127.0.0.1:0"; };'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "no health port"
# Hold a lock the handler's INSERT needs, for 6 s.
psql -X -q -c "BEGIN; LOCK TABLE test_effects IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT;" \
	>/dev/null 2>&1 &
LOCKER=$!
sleep 0.5
ID=$(q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}') RETURNING id")
wait_for "SELECT attempts >= 1 FROM events WHERE id = '$ID'" t 10 || die "the blocked handler was never stopped"
err=$(q "SELECT last_error FROM events WHERE id = '$ID'")
assert_match "$err" 'handler time limit exceeded \(handler_timeout_ms = 1000\)' "the error names the limit"
assert_match "$err" 'lock timeout|statement timeout' "and what the server stopped"
assert_eq "$(q "SELECT processed FROM events WHERE id = '$ID'")" f "a RETRY, not a dead letter"
assert_match "$(grep 'msg="event handled"' "$T/a.log" | head -n 1)" 'outcome=retry' "logged as a retry"
sleep 2
http_get "$PORT" /health/live >/dev/null
assert_eq "$(http_status)" 200 "still live while its handler keeps hitting the limit"
kill -0 "$DPID" 2>/dev/null && log "ok: daemon still running" || fail "daemon died"
wait $LOCKER
wait_for "SELECT processed FROM events WHERE id = '$ID'" t 10 || fail "not handled once the lock was gone"
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_id = '$ID'")" 1 "one effect"
stop_daemon $DPID
assert_eq $? 0 "clean exit"
finish
