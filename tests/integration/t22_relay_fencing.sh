#!/usr/bin/env bash
# Lease fencing: a delivery whose lease expired is taken again; the late
# result of the first attempt does not overwrite the second's.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["slow:6", "200"]}}'
add_sub a a '["job.*"]'
q "UPDATE subscriptions SET timeout_ms = 10000 WHERE name = 'a'"
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; };'
start_daemon a "$T/a.conf"
insert_events job.created 1 "'{}'"
wait_for "SELECT status || '|' || attempt FROM deliveries" "in_flight|1" 10 || die "attempt 1 not in flight"
# Attempt 1 is still waiting for its (slow) answer; pretend its lease ran out.
q "UPDATE deliveries SET locked_until = now() - interval '1 second'"
wait_for "SELECT status || '|' || attempt FROM deliveries" "delivered|2" 15 || die "not taken again and delivered"
log "attempt 2 delivered while attempt 1 was still in flight"
# Attempt 1's slow 200 arrives later: logged, not applied.
wait_for "SELECT count(*) FROM delivery_attempts" 2 15 || die "attempt 1 never reported"
assert_eq "$(q "SELECT string_agg(attempt || ':' || applied || ':' || coalesce(http_status, 0), ' ' ORDER BY attempt) FROM delivery_attempts")" "1:false:200 2:true:200" "the late result is logged as not applied"
assert_eq "$(q "SELECT status || '|' || attempt || '|' || coalesce(last_error, '-') FROM deliveries")" "delivered|2|-" "the second attempt's result stands"
assert_match "$(cat "$T/a.log")" 'outcome=stale' "the stale result is logged as such"

# The fence itself, directly: a stale lease changes nothing, even when a
# replay has reset the attempt number to the same value.
D=$(q "SELECT id FROM deliveries")
q "UPDATE deliveries SET status = 'in_flight', attempt = 1, lease = 1001"
assert_eq "$(q "SELECT pgeventd_finish_delivery('$D', 1000, 1, 'failed', 500, 'late', NULL, now(), 1, 0, 0, 0, 0)")" f "finish under an old lease, same attempt number: refused"
assert_eq "$(q "SELECT status || '|' || attempt FROM deliveries")" "in_flight|1" "row untouched"
assert_eq "$(q "SELECT pgeventd_finish_delivery('$D', 1001, 1, 'delivered', 200, NULL, NULL, now(), 1, 0, 0, 0, 0)")" t "finish under the current lease: applied"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
