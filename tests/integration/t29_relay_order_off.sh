#!/usr/bin/env bash
# A subscription turned unordered while a delivery of one of its keys is
# being queued: the queuing holds the subscription's order lock shared
# until it commits, and the turning off waits for it, so it sees that
# delivery and makes it due. Before the fix the queuing read ordered =
# true, queued the delivery at 'infinity' behind its key's head, and the
# turning off (which did not see it yet) made the head unordered: nothing
# would ever make the delivery due. Such a delivery (constructed here with
# the triggers off) is made due by the relay's periodic sweep.
. "$(dirname "$0")/lib.sh"
setup_db
CFG='{"o": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
start_sink "$CFG"
add_sub o o '["job.*"]'
q "UPDATE subscriptions SET ordered = true"
ins() { # key [body]
	echo "INSERT INTO deliveries (event_id, subscription_id, event_type, body, order_key)
	      SELECT gen_random_uuid(), id, 'job.x', '{\"type\": \"job.$1\"}', 'k:$1' FROM subscriptions RETURNING id"
}
D1=$(q "$(ins x)")
assert_eq "$(q "SELECT next_attempt_at < 'infinity' FROM deliveries WHERE id = '$D1'")" t "the key's head is due"
# The queuing, held open 2 s; the turning off comes meanwhile.
psql -X -q -A -t -v ON_ERROR_STOP=1 >"$T/a.out" 2>&1 <<SQL &
BEGIN;
$(ins x);
SELECT pg_sleep(2);
COMMIT;
SQL
APID=$!
wait_for "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'" 1 10 || die "the queuing did not start"
start=$(date +%s.%N)
q "UPDATE subscriptions SET ordered = false" || fail "turning ordered off"
waited=$(python3 -c "print($(date +%s.%N) - $start >= 1)")
wait $APID || fail "the queuing failed: $(cat "$T/a.out")"
D2=$(head -n 1 "$T/a.out")
assert_eq "$waited" True "the turning off waited for the queuing to commit"
assert_eq "$(q "SELECT (next_attempt_at < 'infinity') || ' ' || (order_key IS NULL) FROM deliveries WHERE id = '$D2'")" \
	"true true" "the delivery queued meanwhile is due and unordered"

# A delivery stranded so (as before the fix): the relay makes it due.
D3=$(q "SET session_replication_role = replica;
        INSERT INTO deliveries (event_id, subscription_id, event_type, body, order_key, seq, next_attempt_at)
        SELECT gen_random_uuid(), id, 'job.y', '{\"type\": \"job.y\"}', 'k:y', 1, 'infinity' FROM subscriptions
        RETURNING id")
conf "$T/a.conf" 'shutdown_timeout_ms = 2000;' 'relay = { event_types = ["job.*"]; };'
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 3 20 || fail "not every delivery went out"
assert_eq "$(q "SELECT status || ' ' || (order_key IS NULL) FROM deliveries WHERE id = '$D3'")" "delivered true" \
	"the stranded delivery was made due, unordered, and delivered"
wait_log a 'msg="relay: deliveries left waiting by an unordered subscription made due" deliveries=1' 5 ||
	fail "the relay logs what it made due"
stop_daemon "$DPID"
finish
