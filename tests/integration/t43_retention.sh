#!/usr/bin/env bash
# Retention deletes processed events and webhook attempt logs older than
# retention.*, in batches, one instance at a time (advisory lock), and never
# touches unprocessed events, events with a dead letter, or dead letters.
. "$(dirname "$0")/lib.sh"
setup_db
old="now() - interval '40 days'"
# Processed long ago: 7 to delete, one with a dead letter to keep.
q "INSERT INTO events (event_type, payload, processed, processed_at, created_at)
   SELECT 'test.effect', '{}', true, $old, $old FROM generate_series(1, 7)" >/dev/null
DL=$(q "INSERT INTO events (event_type, payload, processed, processed_at, created_at, last_error)
        VALUES ('test.permanent', '{}', true, $old, $old, 'boom') RETURNING id")
q "INSERT INTO event_dead_letters (event_id, event_type, payload, error_message, retry_count,
     original_created_at, created_at) VALUES ('$DL', 'test.permanent', '{}', 'boom', 0, $old, $old)" >/dev/null
# Processed recently: kept.
RECENT=$(q "INSERT INTO events (event_type, payload, processed, processed_at)
            VALUES ('test.effect', '{}', true, now() - interval '1 day') RETURNING id")
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
snapshot() { q "SELECT count(*) FROM events"; }

# Off by default: a daemon without retention.* deletes nothing.
conf "$T/off.conf" 'workers = 1;'
start_daemon off "$T/off.conf"
wait_log off 'worker started' 10 || die "daemon did not start"
sleep 1
assert_eq "$(snapshot)" 10 "retention is off by default"
stop_daemon $DPID

# Another instance holds the advisory lock: this one skips its passes.
psql -X -q -c "SELECT pg_advisory_lock(1885824374, 1); SELECT pg_sleep(4)" >/dev/null &
HOLDER=$!
PIDS="$PIDS $HOLDER"
sleep 0.5
conf "$T/a.conf" 'workers = 1;' 'log = { level = "debug"; };' \
	'retention = { processed_after = "30d"; delivery_attempts_after = "14d"; interval = "1s"; batch_size = 2; };'
start_daemon a "$T/a.conf"
wait_log a 'retention: another instance holds the lock, pass skipped' 10 || fail "lock not respected"
assert_eq "$(snapshot)" 10 "nothing deleted while another instance holds the lock"
wait $HOLDER

wait_for "SELECT count(*) FROM events" 3 10 || die "old processed events not deleted"
wait_for "SELECT count(*) FROM delivery_attempts" 1 5 || fail "old attempt logs not deleted"
assert_eq "$(q "SELECT count(*) FROM events WHERE id IN ('$DL', '$RECENT', '$PENDING')")" 3 \
	"kept: the dead-lettered event, the recent one, the unprocessed one"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 1 "dead letters untouched"
assert_eq "$(q "SELECT attempt FROM delivery_attempts")" 4 "the recent attempt log kept"
assert_eq "$(q "SELECT processed FROM events WHERE id = '$PENDING'")" f "the unprocessed event is still pending"
wait_log a 'msg="retention pass" events_deleted=7 delivery_attempts_deleted=3' 5 ||
	fail "pass not logged with its counts"

# Reloadable: turning delivery_attempts_after down to 30m deletes the last log.
conf "$T/a.conf" 'workers = 1;' 'log = { level = "debug"; };' \
	'retention = { processed_after = "30d"; delivery_attempts_after = "30m"; interval = "1s"; batch_size = 2; };'
kill -HUP $DPID
wait_for "SELECT count(*) FROM delivery_attempts" 0 5 || fail "reloaded retention not applied"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
