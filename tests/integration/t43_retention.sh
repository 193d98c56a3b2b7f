#!/usr/bin/env bash
# Retention deletes processed events and webhook attempt logs older than
# retention.*, in batches, one instance at a time (advisory lock), and never
# touches unprocessed events, events with a dead letter, events processed
# before pgeventd (no processed_at), or dead letters. Its keys reload: turned
# on by SIGHUP it runs at once, whatever the interval.
. "$(dirname "$0")/lib.sh"
setup_db
old="now() - interval '40 days'"
old_processed() { # n: processed long ago, to be deleted
	q "INSERT INTO events (event_type, payload, processed, processed_at, created_at)
	   SELECT 'test.effect', '{}', true, $old, $old FROM generate_series(1, $1)" >/dev/null
}
old_processed 7
# Processed long ago but dead-lettered: kept, a DBA may replay it.
DL=$(q "INSERT INTO events (event_type, payload, processed, processed_at, created_at, last_error)
        VALUES ('test.permanent', '{}', true, $old, $old, 'boom') RETURNING id")
q "INSERT INTO event_dead_letters (event_id, event_type, payload, error_message, retry_count,
     original_created_at, created_at) VALUES ('$DL', 'test.permanent', '{}', 'boom', 0, $old, $old)" >/dev/null
# Processed recently: kept.
RECENT=$(q "INSERT INTO events (event_type, payload, processed, processed_at)
            VALUES ('test.effect', '{}', true, now() - interval '1 day') RETURNING id")
# Processed before pgeventd ran (no processed_at): kept.
LEGACY=$(q "INSERT INTO events (event_type, payload, processed, created_at)
            VALUES ('legacy.thing', '{}', true, $old) RETURNING id")
# Unprocessed and old, but not due for days: kept (and not run by the daemon).
PENDING=$(q "INSERT INTO events (event_type, payload, created_at, next_attempt_at)
             VALUES ('test.effect', '{}', $old, now() + interval '7 days') RETURNING id")
# Attempt logs: 3 old, 1 recent.
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES ('s', 'http://127.0.0.1:1/', 'x', '[\"*\"]')" >/dev/null
D=$(q "INSERT INTO deliveries (event_id, subscription_id, event_type, body, status)
       SELECT gen_random_uuid(), id, 'test.effect', '{}', 'delivered' FROM subscriptions RETURNING id")
q "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, applied)
   SELECT '$D', g, now() - (20 - g) * interval '1 day', 1, 500, true FROM generate_series(1, 3) g" >/dev/null
q "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, applied)
   VALUES ('$D', 4, now() - interval '1 hour', 1, 200, true)" >/dev/null
count() { q "SELECT count(*) FROM events"; }

# Off by default: a daemon without retention.* deletes nothing.
conf "$T/a.conf" 'workers = 1;' 'log = { level = "debug"; };'
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"
sleep 1
assert_eq "$(count)" 11 "retention is off by default"

# Turned on by SIGHUP with a 10 min interval: the first pass runs now.
on() { # interval attempts_after
	conf "$T/a.conf" 'workers = 1;' 'log = { level = "debug"; };' \
		"retention = { processed_after = \"30d\"; delivery_attempts_after = \"$2\"; interval = \"$1\"; batch_size = 2; };"
	kill -HUP $DPID
}
on 10m 14d
wait_for "SELECT count(*) FROM events" 4 10 || die "old processed events not deleted once turned on"
wait_for "SELECT count(*) FROM delivery_attempts" 1 5 || fail "old attempt logs not deleted"
assert_eq "$(q "SELECT count(*) FROM events WHERE id IN ('$DL', '$RECENT', '$LEGACY', '$PENDING')")" 4 \
	"kept: the dead-lettered, the recent, the pre-pgeventd and the unprocessed event"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 1 "dead letters untouched"
assert_eq "$(q "SELECT attempt FROM delivery_attempts")" 4 "the recent attempt log kept"
assert_eq "$(q "SELECT processed FROM events WHERE id = '$PENDING'")" f "the unprocessed event is still pending"
wait_log a 'msg="retention pass" events_deleted=7 delivery_attempts_deleted=3' 5 ||
	fail "pass not logged with its counts (7 events in batches of 2)"

# Another instance holds the advisory lock: this one deletes nothing.
old_processed 3
psql -X -q -c "SELECT pg_advisory_lock(1885824374, 1); SELECT pg_sleep(60)" >/dev/null 2>&1 &
HOLDER=$!
PIDS="$PIDS $HOLDER"
wait_for "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1885824374 AND objid = 1 AND granted" 1 5 ||
	die "lock holder did not start"
on 1s 14d
wait_log a 'retention: another instance holds the lock, pass skipped' 10 || fail "lock not respected"
sleep 1.5
assert_eq "$(count)" 7 "nothing deleted while another instance holds the lock"
q "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1885824374 AND objid = 1" >/dev/null
wait_for "SELECT count(*) FROM events" 4 10 || fail "not deleted once the lock was free"

# Reloadable: delivery_attempts_after down to 30m deletes the last log.
on 1s 30m
wait_for "SELECT count(*) FROM delivery_attempts" 0 5 || fail "reloaded retention not applied"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
