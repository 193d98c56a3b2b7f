#!/usr/bin/env bash
# SIGHUP applies relay settings while the relay runs: new event-type
# patterns route at once and block_private_networks takes effect on the
# next request; turning the relay off needs a restart and is refused.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
add_sub a a '["*"]'
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; };'
start_daemon a "$T/a.conf"
insert_events job.created 1 "'{}'"
wait_sink 'r["sig_ok"]' 1 15 || die "first delivery"
insert_events order.created 1 "'{}'"
wait_for "SELECT count(*) FROM events WHERE processed" 2 10 || die "order.created not handled"
assert_eq "$(q "SELECT count(*) FROM deliveries WHERE event_type = 'order.created'")" 0 "order.* not routed before the reload"

conf "$T/a.conf" 'relay = { event_types = ["job.*", "order.*"]; block_private_networks = true; };'
kill -HUP $DPID
wait_log a 'changed key applied.*key=relay.block_private_networks' 5 || die "reload not applied"
wait_log a 'SIGHUP: configuration re-read' 5 || die "reload not published"
insert_events order.created 1 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE event_type = 'order.created' AND status = 'failed'" 1 15 ||
	die "new pattern not routed, or the block not applied"
assert_match "$(q "SELECT last_error FROM deliveries WHERE event_type = 'order.created'")" \
	'^refused: the address is loopback' "the reloaded block refuses the loopback receiver"
# Past the first seconds, connections opened before the reload are still
# never reused (CURLOPT_MAXLIFETIME_CONN): the next one is refused too.
sleep 2.5
insert_events order.created 1 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE event_type = 'order.created' AND status = 'failed'" 2 15 ||
	fail "a connection from before the reload was reused"
assert_eq "$(sink_count 'True')" 1 "nothing more reached the receiver"

# [] would turn the relay off: not applied, routing goes on.
conf "$T/a.conf" 'relay = { event_types = []; };'
kill -HUP $DPID
wait_log a 'changed key not applied.*key=relay.event_types.*turning the relay on or off' 5 ||
	fail "turning the relay off was not refused"
wait_log a 'SIGHUP: configuration re-read' 5 2 || die "second reload"
insert_events job.created 1 "'{}'"
wait_sink 'r["sig_ok"]' 2 15 || fail "relay stopped routing after a refused change"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
