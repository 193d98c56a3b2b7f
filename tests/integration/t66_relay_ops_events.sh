#!/usr/bin/env bash
# Operational events: when the relay disables a subscription (410 Gone,
# relay.disable_after_ms) or its breaker opens, it inserts
# pgeventd.subscription.disabled / .breaker_opened into events in the same
# transaction, exactly once per disable or open, however many results of
# the subscription's requests in flight arrive after it; an operators'
# subscription on those types receives them like any other event.
. "$(dirname "$0")/lib.sh"
setup_db
W='"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]'
start_sink "{\"gone\": {$W, \"then\": \"410\"}, \"down\": {$W, \"then\": \"500\"},
  \"slow\": {$W, \"then\": \"500\"}, \"ops\": {$W}}"
add_sub gone gone '["job.gone"]'
add_sub down down '["job.down"]'
add_sub slow slow '["job.slow"]'
add_sub ops ops '["pgeventd.subscription.*"]'
# max_attempts 1: each delivery's one failure is final (no retries to wait
# for); the breaker counts every failed result.
q "UPDATE subscriptions SET max_attempts = 1"
conf "$T/a.conf" 'shutdown_timeout_ms = 500;' \
	'relay = { event_types = ["job.*", "pgeventd.subscription.*"];
	  breaker = { failures = 3; cooldown_ms = 600000; }; disable_after_ms = 1500; };'
start_daemon a "$T/a.conf"
wait_log a 'relay started' 10 || die "relay did not start"

events_of() { # type subscription
	q "SELECT count(*) FROM events WHERE event_type = '$1'
	   AND aggregate_id = (SELECT id FROM subscriptions WHERE name = '$2')"
}

# 410 Gone to 16 requests in flight at once: one disable, one event.
insert_events job.gone 16 "'{}'"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
          WHERE s.name = 'gone' AND d.status = 'failed'" 16 20 || die "the 410s were not recorded"
assert_eq "$(q "SELECT enabled FROM subscriptions WHERE name = 'gone'")" f "410 Gone disables the subscription"
assert_eq "$(sink_count 'r["key"] == "gone"')" 16 "16 requests answered 410"
assert_eq "$(events_of pgeventd.subscription.disabled gone)" 1 "one disabled event for 16 results of 410"
assert_match "$(q "SELECT payload->>'subscription' || ' ' || (payload->>'reason') FROM events
                   WHERE event_type = 'pgeventd.subscription.disabled'")" \
	'^gone endpoint answered 410 Gone$' "the event names the subscription and the reason"

# 500 to 12 requests in flight at once, breaker at 3: one open, one event
# (the results that come while it is open do not open it again).
insert_events job.down 12 "'{}'"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
          WHERE s.name = 'down' AND d.status = 'dead'" 12 20 || die "the 500s were not recorded"
assert_eq "$(q "SELECT paused_until > now() FROM subscriptions WHERE name = 'down'")" t "the breaker is open"
assert_eq "$(events_of pgeventd.subscription.breaker_opened down)" 1 "one breaker_opened event for 12 failures"
assert_eq "$(events_of pgeventd.subscription.disabled down)" 0 "not disabled yet"

# disable_after_ms: the same subscription failing for longer than 1.5 s
# is disabled once its breaker lets a request through. Reopen it by hand.
sleep 2
q "UPDATE subscriptions SET paused_until = NULL WHERE name = 'down'" >/dev/null
insert_events job.down 5 "'{}'"
wait_for "SELECT enabled FROM subscriptions WHERE name = 'down'" f 20 || die "disable_after_ms did not disable"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
          WHERE s.name = 'down' AND d.status IN ('dead', 'failed')" 17 20 || true
assert_eq "$(events_of pgeventd.subscription.disabled down)" 1 "one disabled event for disable_after_ms"
assert_match "$(q "SELECT payload->>'reason' FROM events WHERE event_type = 'pgeventd.subscription.disabled'
                   AND payload->>'subscription' = 'down'")" '^every attempt failed for ' \
	"the event says why"
assert_eq "$(events_of pgeventd.subscription.breaker_opened down)" 2 \
	"the breaker opened again with the request it let through (a new open, a new event)"

# The operators' subscription receives each event once.
wait_sink 'r["key"] == "ops"' 4 20 || die "the operational events were not delivered"
sleep 1
assert_eq "$(python3 -c "
import json
rs = [json.loads(l) for l in open('$T/sink.jsonl')]
print(sorted(r['event_type'] for r in rs if r['key'] == 'ops' and r['sig_ok']))")" \
	"['pgeventd.subscription.breaker_opened', 'pgeventd.subscription.breaker_opened', 'pgeventd.subscription.disabled', 'pgeventd.subscription.disabled']" \
	"the ops subscription received every operational event, signed, once"

# Without pgeventd.subscription.* in relay.event_types the events are
# recorded as processed (no worker dead-letters them).
stop_daemon $DPID >/dev/null
conf "$T/b.conf" 'shutdown_timeout_ms = 500;' \
	'relay = { event_types = ["job.*"]; breaker = { failures = 3; cooldown_ms = 600000; }; };'
start_daemon b "$T/b.conf"
wait_log b 'relay started' 10 || die "relay did not start"
insert_events job.slow 3 "'{}'"
wait_for "SELECT count(*) FROM events WHERE event_type = 'pgeventd.subscription.breaker_opened'
          AND payload->>'subscription' = 'slow'" 1 20 || die "no breaker_opened event for slow"
sleep 1
assert_eq "$(q "SELECT processed FROM events WHERE payload->>'subscription' = 'slow'")" t \
	"an event the relay does not route is recorded as processed"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 0 "no dead letter"
finish
