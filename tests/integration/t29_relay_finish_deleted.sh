#!/usr/bin/env bash
# A result whose delivery was deleted while its request was out (retention,
# a subscription deleted) records no attempt, and the round's other
# results are recorded as usual: the attempt of a deleted delivery broke
# the foreign key and aborted the whole round (not retried), leaving every
# result of the round unrecorded. Then through the daemon: a delivery
# deleted while its request hangs, the others of its round are recorded
# and no round fails.
. "$(dirname "$0")/lib.sh"
setup_db

q "INSERT INTO subscriptions (name, url, secret) VALUES ('s', 'http://127.0.0.1:1/', 'x')"
q "INSERT INTO deliveries (id, event_id, subscription_id, event_type, body, status, attempt, lease, locked_until)
   SELECT ('00000000-0000-0000-0000-00000000000' || g)::uuid, gen_random_uuid(),
          (SELECT id FROM subscriptions), 't', '{}', 'in_flight', 1, g, now() + interval '1 minute'
     FROM generate_series(1, 3) g"
q "DELETE FROM deliveries WHERE id = '00000000-0000-0000-0000-000000000002'"
out=$(q "SELECT pgeventd_finish_deliveries(
           ARRAY['00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002',
                 '00000000-0000-0000-0000-000000000003']::uuid[], '{1,2,3}', '{1,1,1}',
           '{delivered,delivered,failed}', '{200,200,500}', '{NULL,NULL,boom}', '{NULL,NULL,NULL}',
           ARRAY[extract(epoch FROM now()), extract(epoch FROM now()), extract(epoch FROM now())]::float8[],
           '{1,1,1}', '{0,0,0}', 0, 0, 0, false)" 2>&1)
assert_eq "$out" "{t,f,t}" "the round applies to the deliveries still there"
assert_eq "$(q "SELECT string_agg(right(delivery_id::text, 1) || ':' || applied, ',' ORDER BY delivery_id)
                  FROM delivery_attempts")" "1:true,3:true" "an attempt for each delivery still there"
assert_eq "$(q "SELECT string_agg(status, ',' ORDER BY id) FROM deliveries")" "delivered,failed" "their results written"
q "DELETE FROM deliveries; DELETE FROM subscriptions"

CFG='{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["slow:2"]}}'
start_sink "$CFG"
add_sub a a '["job.*"]'
conf "$T/a.conf" 'shutdown_timeout_ms = 2000;' 'relay = { event_types = ["job.*"]; };'
insert_events job.created 3 "'{}'"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'in_flight'" 3 20 || die "not all in flight"
q "DELETE FROM deliveries WHERE id = (SELECT id FROM deliveries ORDER BY id LIMIT 1)"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 2 20 || fail "the others were not recorded"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts")" 2 "an attempt for each of the others"
sleep 0.5
assert_eq "$(grep -c 'outcome=unrecorded\|db_error=' "$T/a.log")" 0 "no round failed"
stop_daemon "$DPID"
finish
