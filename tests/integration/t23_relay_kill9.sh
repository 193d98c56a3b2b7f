#!/usr/bin/env bash
# kill -9 with requests in flight, restart: every delivery is delivered;
# duplicates only for the requests that were in flight (receivers dedupe by
# webhook id), and never more than that.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "then": "slow:0.2"}}'
add_sub a a '["job.*"]'
q "UPDATE subscriptions SET timeout_ms = 2000 WHERE name = 'a'"
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; concurrency = 16; connect_timeout_ms = 1000; lease_margin_ms = 1000; };'
insert_events job.created 300 "'{}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) >= 40 FROM deliveries WHERE status = 'delivered'" t 30 || die "no progress"
kill -9 $DPID
wait $DPID 2>/dev/null
INFLIGHT=$(q "SELECT count(*) FROM deliveries WHERE status = 'in_flight'")
log "killed with $INFLIGHT deliveries in flight"
[ "$INFLIGHT" -gt 0 ] && log "ok: requests were in flight" || fail "nothing in flight at the kill"
start_daemon b "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 300 60 || die "not all delivered after the restart"
DUPS=$(python3 -c "
import json, collections
c = collections.Counter(json.loads(l)['id'] for l in open('$T/sink.jsonl'))
print(sum(n - 1 for n in c.values()))")
log "duplicates seen by the sink: $DUPS (bound: $INFLIGHT in flight at the kill)"
assert_eq "$(python3 -c "
import json; print(len({json.loads(l)['id'] for l in open('$T/sink.jsonl')}))")" 300 "every delivery received"
[ "$DUPS" -le "$INFLIGHT" ] && log "ok: duplicates within the in-flight bound" || fail "$DUPS duplicates > $INFLIGHT in flight"
assert_match "$(cat "$T/b.log")" 'expired leases put back to pending' "the expired leases were reclaimed"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
