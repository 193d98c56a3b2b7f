#!/usr/bin/env bash
# Fan-out: 1,000 events x 3 subscriptions with different patterns and the
# three signature schemes -> exactly the expected deliveries, each received
# once (by webhook id), every signature verified by the sink on its own.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{
 "a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
 "b": {"scheme": "timestamped_hex", "secrets": ["b-raw-secret"], "signature_header": "X-Buddy-Signature"},
 "c": {"scheme": "body_hex", "secrets": ["c raw secret"]}}'
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw add_sub a a '["job.*"]' standard
SECRET=b-raw-secret add_sub b b '["*"]' timestamped_hex
q "UPDATE subscriptions SET signature_header = 'X-Buddy-Signature' WHERE name = 'b'"
SECRET='c raw secret' add_sub c c '["job.created", "order.*"]' body_hex
conf "$T/a.conf" 'relay = { event_types = ["*"]; concurrency = 32; };' 'log = { level = "warning"; };'
insert_events job.created 500 "jsonb_build_object('n', generate_series)"
insert_events job.deleted 300 "jsonb_build_object('n', generate_series)"
insert_events order.paid 200 "jsonb_build_object('n', generate_series, 's', 'café \"q\"')"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 2500 120 || die "not all delivered"

assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "every event processed"
assert_eq "$(q "SELECT string_agg(s.name || '=' || n, ' ' ORDER BY s.name) FROM (SELECT subscription_id, count(*) n FROM deliveries GROUP BY 1) d JOIN subscriptions s ON s.id = d.subscription_id")" "a=800 b=1000 c=700" "deliveries per subscription follow the patterns"
assert_eq "$(sink_count 'True')" 2500 "the sink received 2500 requests"
assert_eq "$(python3 -c "
import json; ids=[json.loads(l)['id'] for l in open('$T/sink.jsonl')]; print(len(set(ids)))")" 2500 "each delivery received once (distinct webhook ids)"
assert_eq "$(sink_count 'r["sig_ok"] and r["body_ok"]')" 2500 "every signature and body verified by the sink"
assert_eq "$(sink_count 'r["key"] == "a" and r["event_type"].startswith("job.")')" 800 "a got only job.*"
assert_eq "$(sink_count 'r["key"] == "c" and r["event_type"] in ("job.created", "order.paid")')" 700 "c got job.created and order.*"
assert_eq "$(sink_count 'r["user_agent"].startswith("pgeventd/") and r["content_type"] == "application/json"')" 2500 "User-Agent and Content-Type"
# the body is the event: id, type, timestamp, aggregate, data = payload
ev=$(q "SELECT id FROM events WHERE event_type = 'order.paid' LIMIT 1")
body=$(q "SELECT body FROM deliveries WHERE event_id = '$ev' LIMIT 1")
assert_eq "$(jget "$body" id)|$(jget "$body" type)|$(jget "$body" 'data,s')" "$ev|order.paid|café \"q\"" "body carries id, type and data"
assert_match "$(jget "$body" timestamp)" '^20[0-9-]+T[0-9:.]+Z$' "body timestamp is RFC 3339 UTC"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE applied AND http_status = 200")" 2500 "one applied attempt per delivery"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
