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
conf "$T/a.conf" 'shutdown_timeout_ms = 1000;' 'health = { listen = "127.0.0.1:0"; };' 'relay = { event_types = ["job.*"]; backoff = { base_ms = 200; cap_ms = 1000; };
  breaker = { failures = 5; cooldown_ms = 1500; }; };'
insert_events job.created 50 "'{}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) > 0 FROM delivery_attempts WHERE error ~* 'connect'" t 20 || die "no failed attempt"
sleep 2
assert_eq "$(q "SELECT paused_until > now() OR consecutive_failures >= 5 FROM subscriptions")" t "the breaker tripped"
assert_eq "$(q "SELECT count(*) FROM deliveries WHERE status IN ('dead', 'failed')")" 0 "nothing given up while the receiver is down"
# /health names the failing subscription with its last error (the sampler
# reads them every 5 s).
HP=$(health_port a) || die "no health port"
failing=
for _ in $(seq 1 40); do
	failing=$(jget "$(http_get "$HP" /health)" 'relay,failing_subscriptions,0,name')
	[ "$failing" = a ] && break
	sleep 0.25
done
assert_eq "$failing" a "/health lists the failing subscription"
h=$(http_get "$HP" /health)
assert_match "$(jget "$h" 'relay,failing_subscriptions,0,last_error')" '[Cc]onnect' "/health gives its last error"
assert_match "$(jget "$h" 'relay,failing_subscriptions,0,consecutive_failures')" '^[1-9][0-9]*$' "/health gives its failure count"
start_sink "$CFG" "$PORT"
log "receiver up again on port $PORT"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 50 30 || die "not all delivered"
assert_eq "$(python3 -c "
import json; print(len({json.loads(l)['id'] for l in open('$T/sink.jsonl')}))")" 50 "every delivery received"
assert_eq "$(q "SELECT consecutive_failures || '|' || (failing_since IS NULL) FROM subscriptions")" "0|true" "a success resets the subscription's failure count"
for _ in $(seq 1 40); do
	failing=$(jget "$(http_get "$HP" /health)" 'relay,failing_subscriptions')
	[ "$failing" = "[]" ] && break
	sleep 0.25
done
assert_eq "$failing" "[]" "/health lists no failing subscription once it recovered"

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
