#!/usr/bin/env bash
# relay.block_private_networks: a subscriber on a loopback address is
# refused after DNS resolution, before any byte is sent; the delivery fails
# for good with a message that says why.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
add_sub a a '["job.*"]'
q "INSERT INTO subscriptions (name, url, secret, event_types)
   VALUES ('byname', 'http://localhost:$SINK_PORT/a', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '[\"job.*\"]')"
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; block_private_networks = true; };'
start_daemon a "$T/a.conf"
insert_events job.created 1 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'failed'" 2 15 || die "not refused"
assert_eq "$(q "SELECT string_agg(DISTINCT attempt::text, ',') FROM deliveries")" 1 "failed on attempt 1, no retry"
assert_match "$(q "SELECT string_agg(DISTINCT last_error, ',') FROM deliveries")" '^refused: the address is loopback, private or link-local' "says why"
assert_eq "$(sink_count 'True')" 0 "nothing reached the receiver, by address or by name"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
