#!/usr/bin/env bash
# A round whose connection is lost after its claim's rows came but before
# the commit (the pipeline's sync) sends none of them: the claim may have
# rolled back, and the rows are then claimed (here, or by another
# instance) and sent again. A deferred trigger holds the commit of the
# claim of the second delivery while the relay's session is terminated;
# the claim rolls back. That claim is usually the round of the first
# delivery's result; when the relay's last claim before it came back empty
# (the relay then claims again only on a NOTIFY or its poll) it is the poll's
# own claim, and nothing may be sent from it either. Before the fix the relay sent the delivery anyway, so
# the receiver got it twice for one counted attempt.
. "$(dirname "$0")/lib.sh"
setup_db
CFG='{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["slow:2"]}}'
start_sink "$CFG"
add_sub a a '["job.*"]'
q "CREATE TABLE t29_armed (on_ boolean);
   CREATE FUNCTION t29_hold_commit() RETURNS trigger LANGUAGE plpgsql AS
   \$\$BEGIN
     IF NEW.status = 'in_flight' AND EXISTS (SELECT FROM t29_armed) THEN
       PERFORM pg_sleep(3);
     END IF;
     RETURN NULL;
   END\$\$;
   CREATE CONSTRAINT TRIGGER t29_hold_commit AFTER UPDATE ON deliveries
   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION t29_hold_commit()"
# The second delivery is inserted without its trigger (no NOTIFY) and claims wait 10 s
# apart: it is claimed, usually, by the round of the first's result.
q "UPDATE subscriptions SET timeout_ms = 3000"
conf "$T/a.conf" 'poll_interval_ms = 10000;' 'shutdown_timeout_ms = 2000;' \
	'relay = { event_types = ["job.*"]; lease_margin_ms = 100; connect_timeout_ms = 1000; };'
insert_events job.first 1 "'{}'"
start_daemon a "$T/a.conf"
wait_sink 'r["event_type"] == "job.first"' 1 20 || die "the first delivery was not sent"
q "INSERT INTO t29_armed VALUES (true)"
ID2=$(q "SET session_replication_role = replica; INSERT INTO deliveries (event_id, subscription_id, event_type, body)
          SELECT gen_random_uuid(), id, 'job.second', '{\"type\": \"job.second\"}' FROM subscriptions RETURNING id")
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgeventd relay' AND datname = current_database()
           AND wait_event = 'PgSleep'" 1 30 || die "the round's commit was not held"
q "DELETE FROM t29_armed"
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgeventd relay' AND datname = current_database()" >/dev/null
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 2 30 || fail "not both delivered"
sleep 1.5
assert_eq "$(q "SELECT attempt FROM deliveries WHERE id = '$ID2'")" 1 "one attempt counted"
assert_eq "$(sink_count 'r["event_type"] == "job.second"')" 1 "the receiver got the second delivery once: none sent from the claim lost with the round"
assert_eq "$(grep -c 'outcome=stale' "$T/a.log")" 0 "no attempt of a claim that rolled back"
stop_daemon "$DPID"
finish
