#!/usr/bin/env bash
# The receiver is down for a while, then up: nothing is lost. The circuit
# breaker pauses the subscription meanwhile; shutdown puts unfinished
# requests back to pending.
. "$(dirname "$0")/lib.sh"
setup_db
CFG='{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
start_sink "$CFG"
PORT=$SINK_PORT
kill $SINK_PID; wait $SINK_PID 2>/dev/null
add_sub a a '["job.*"]'
q "UPDATE subscriptions SET max_attempts = 50 WHERE name = 'a'"
conf "$T/a.conf" 'shutdown_timeout_ms = 1000;' 'relay = { event_types = ["job.*"]; backoff = { base_ms = 200; cap_ms = 1000; };
  breaker = { failures = 5; cooldown_ms = 1500; }; };'
insert_events job.created 50 "'{}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) > 0 FROM delivery_attempts WHERE error ~* 'connect'" t 20 || die "no failed attempt"
sleep 2
assert_eq "$(q "SELECT paused_until > now() OR consecutive_failures >= 5 FROM subscriptions")" t "the breaker tripped"
assert_eq "$(q "SELECT count(*) FROM deliveries WHERE status IN ('dead', 'failed')")" 0 "nothing given up while the receiver is down"
start_sink "$CFG" "$PORT"
log "receiver up again on port $PORT"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 50 30 || die "not all delivered"
assert_eq "$(python3 -c "
import json; print(len({json.loads(l)['id'] for l in open('$T/sink.jsonl')}))")" 50 "every delivery received"
assert_eq "$(q "SELECT consecutive_failures || '|' || (failing_since IS NULL) FROM subscriptions")" "0|true" "a success resets the subscription's failure count"

# Shutdown with a request in flight that outlives shutdown_timeout_ms:
# its lease is released and the attempt not counted.
q "UPDATE subscriptions SET timeout_ms = 60000"
printf '%s\n' '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "then": "hang"}}' >"$T/sink.json"
insert_events job.created 1 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'in_flight'" 1 10 || die "not in flight"
kill -TERM $DPID; wait $DPID; rc=$?
assert_eq "$rc" 0 "SIGTERM with a request in flight: exit 0"
assert_eq "$(q "SELECT status || '|' || attempt FROM deliveries WHERE status <> 'delivered'")" "pending|0" "its lease is released, the attempt not counted"
finish
