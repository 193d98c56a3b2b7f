#!/usr/bin/env bash
# Deliveries that cannot even be sent (an extra header the subscription
# names with a colon) fail for good, each recorded once with its reason and
# no breaker opening, while the relay is busy with another subscription's rounds:
# the relay writes them when no round of results is out on its connection.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"ok": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
add_sub ok ok '["*"]'
add_sub broken ok '["*"]'
q "UPDATE subscriptions SET headers = '{\"X-Bad:Name\": \"x\"}' WHERE name = 'broken'"
q "UPDATE subscriptions SET max_in_flight = 32"
conf "$T/a.conf" 'relay = { event_types = ["*"]; concurrency = 32; breaker = { failures = 3; }; };'
insert_events t.thing 300 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status IN ('delivered', 'failed', 'dead')" 600 60 ||
	die "not all finished"

st() { q "SELECT d.status || ' ' || count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
          WHERE s.name = '$1' GROUP BY d.status"; }
assert_eq "$(st ok)" "delivered 300" "the healthy subscription's deliveries all delivered"
assert_eq "$(st broken)" "failed 300" "the unsendable ones failed for good"
assert_eq "$(q "SELECT count(*) || ' ' || count(*) FILTER (WHERE a.applied AND a.http_status IS NULL
                  AND a.error = 'bad extra header X-Bad:Name')
                FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'broken'")" \
	"300 300" "one attempt each, applied, with the reason"
assert_eq "$(q "SELECT enabled || ' ' || (paused_until IS NULL) FROM subscriptions
                WHERE name = 'broken'")" "true true" \
	"the breaker (3 failures) does not open on them"
assert_eq "$(grep -c 'msg="delivery cannot be sent"' "$T/a.log")" 300 "each logged once"
assert_eq "$(sink_count 'True')" 300 "only the healthy subscription's requests reached the sink"
stop_daemon $DPID
assert_eq $? 0 "exit 0"
finish
