#!/usr/bin/env bash
# `deliveries retry` of several dead deliveries of one key of an ordered
# subscription queues them again in the order they were first queued: the
# first of them is the key's head, the others wait behind it in order.
# Before the fix one UPDATE queued them in whatever order it met the rows
# (here, the ids run against the queue order and the first queued rows
# were moved last in the table).
. "$(dirname "$0")/lib.sh"
setup_db
q "INSERT INTO subscriptions (name, url, secret, ordered) VALUES ('o', 'http://127.0.0.1:1/', 'x', true)"
for id in 3 2 1; do
	q "INSERT INTO deliveries (id, event_id, subscription_id, event_type, body, order_key)
	   SELECT '00000000-0000-0000-0000-00000000000$id', gen_random_uuid(), id, 'job.x', '{}', 'k:x'
	     FROM subscriptions" >/dev/null
done
order() { q "SELECT string_agg(right(id::text, 1), ',' ORDER BY seq) FROM deliveries"; }
assert_eq "$(order)" "3,2,1" "queued in the order 3, 2, 1"
for id in 3 2 1; do
	q "UPDATE deliveries SET status = 'dead', finished_at = now() WHERE id = '00000000-0000-0000-0000-00000000000$id'"
done
q "UPDATE deliveries SET last_error = 'moved' WHERE id <> '00000000-0000-0000-0000-000000000001'"
conf "$T/a.conf"
out=$("$BIN" -c "$T/a.conf" deliveries retry 00000000-0000-0000-0000-000000000001 \
	00000000-0000-0000-0000-000000000002 00000000-0000-0000-0000-000000000003 2>&1)
assert_eq "$out" "3 deliveries queued again" "deliveries retry: $out"
assert_eq "$(order)" "3,2,1" "queued again in the order they were first queued"
assert_eq "$(q "SELECT string_agg(right(id::text, 1) || ':' || status || ':' || (next_attempt_at < 'infinity'), ',' ORDER BY seq)
                  FROM deliveries")" "3:pending:true,2:pending:false,1:pending:false" \
	"the first queued is the key's head, the others wait behind it"
finish
