#!/usr/bin/env bash
# retention.deliveries_after deletes the deliveries that finished
# (delivered, failed, dead) longer ago than it says, with their attempt
# logs, in batches, and nothing else: not a pending or in-flight delivery
# (even one carrying an old finished_at, as a retried dead one may), not a
# recent one, not one another transaction holds (it goes at the next pass).
. "$(dirname "$0")/lib.sh"
setup_db
q "INSERT INTO subscriptions (name, url, secret) VALUES ('s', 'http://127.0.0.1:1/', 'x')" >/dev/null
# delivery LABEL STATUS FINISHED_AT [LOCKED_UNTIL]: a delivery with two attempt
# logs started an hour ago (too recent for delivery_attempts_after).
delivery() {
	q "WITH d AS (INSERT INTO deliveries (event_id, subscription_id, event_type, body, status, attempt,
	                                      finished_at, next_attempt_at, locked_until, lease, last_error)
	             SELECT gen_random_uuid(), id, 'test.effect', '{\"n\":1}', '$2', 2, $3,
	                    now() + interval '7 days', ${4:-NULL}, 1, '$1' FROM subscriptions RETURNING id),
	        a AS (INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, applied)
	              SELECT d.id, g, now() - interval '1 hour', 5, true FROM d, generate_series(1, 2) g)
	   SELECT id FROM d" >/dev/null
}
old="now() - interval '40 days'"
for i in 1 2 3 4 5; do delivery old-delivered delivered "$old"; done
for i in 1 2 3; do delivery old-failed failed "$old"; done
for i in 1 2 3 4; do delivery old-dead dead "$old"; done
delivery recent-delivered delivered "now() - interval '1 day'"
delivery recent-delivered delivered "now() - interval '29 days'"
delivery recent-dead dead "now() - interval '2 days'"
delivery recent-failed failed "now() - interval '3 days'"
# A dead delivery retried by hand keeps nothing of its end but may still be
# pending with its old finished_at; one in flight likewise.
delivery pending-old pending "$old"
delivery pending-new pending NULL
delivery in-flight-old in_flight "$old" "now() + interval '1 hour'"
delivery in-flight-new in_flight NULL "now() + interval '1 hour'"
# Old and finished, but held by another transaction: skipped this pass.
delivery held delivered "$old"
HELD=$(q "SELECT id FROM deliveries WHERE last_error = 'held'")
PGAPPNAME=t68-holder psql -X -q -c "BEGIN; SELECT 1 FROM deliveries WHERE id = '$HELD' FOR UPDATE; SELECT pg_sleep(60);" >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 't68-holder' AND wait_event = 'PgSleep'" 1 10 || die "holder did not start"
survivors() { q "SELECT string_agg(last_error || ':' || status, ',' ORDER BY last_error, status) FROM deliveries"; }
KEEP="held:delivered,in-flight-new:in_flight,in-flight-old:in_flight,pending-new:pending,pending-old:pending,recent-dead:dead,recent-delivered:delivered,recent-delivered:delivered,recent-failed:failed"

conf "$T/a.conf" 'workers = 1;' 'health = { listen = "127.0.0.1:0"; };' \
	'retention = { deliveries_after = "30d"; interval = "2s"; batch_size = 2; };'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "no health port"
wait_for "SELECT count(*) FROM deliveries" 9 20 || die "old finished deliveries not deleted: $(survivors)"
assert_eq "$(survivors)" "$KEEP" "exactly the old finished deliveries went"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts")" 18 "their attempt logs went with them, the others' stayed"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a LEFT JOIN deliveries d ON d.id = a.delivery_id WHERE d.id IS NULL")" 0 \
	"no attempt log outlives its delivery"
wait_log a 'msg="retention pass" events_deleted=0 delivery_attempts_deleted=0 deliveries_deleted=12 ' 10 ||
	fail "pass not logged with its count (12 in batches of 2)"

# Released, the held one goes at the next pass; nothing else does.
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 't68-holder'" >/dev/null
wait_for "SELECT count(*) FROM deliveries" 8 10 || fail "the held delivery not deleted once released"
assert_eq "$(survivors)" "${KEEP#held:delivered,}" "then the held one, and still nothing pending, in flight or recent"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts")" 16 "with its attempt logs"
http_get "$PORT" /metrics >/dev/null
assert_match "$(cat "$T/body")" '^pgeventd_retention_deleted_total\{table="deliveries"\} 13$' "counted in /metrics"
stop_daemon $DPID
assert_eq $? 0 "exit 0"
finish
