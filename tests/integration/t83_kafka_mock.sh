#!/usr/bin/env bash
# Kafka, against librdkafka's mock cluster (3 brokers, a 4-partition topic):
# 10 aggregates x 20 events plus 10 with an ordering_key and no aggregate.
# A consumer reads the topic back: every delivery once
# (pgeventd-delivery-id), the key is the ordering_key, else the aggregate,
# the value the body byte for byte, the ce_* headers; each key in one
# partition, in event order (an ordered subscription, nothing held back:
# never two of a key unreported at once); deliveries are delivered only on
# their delivery report.
. "$(dirname "$0")/lib.sh"
KM=${PGEVENTD_BUILDDIR:?}/tests/kafka_mock
[ -x "$KM" ] || { echo "SKIP: no tests/kafka_mock"; exit 77; }
setup_db
"$KM" "$T/bootstrap" t83 4 210 120 >"$T/topic.jsonl" 2>"$T/kafka_mock.log" &
KPID=$!
PIDS="$PIDS $KPID"
for i in $(seq 1 100); do [ -s "$T/bootstrap" ] && break; sleep 0.1; done
BOOT=$(cat "$T/bootstrap")
[ -n "$BOOT" ] || die "no mock cluster"
q "INSERT INTO subscriptions (name, url, secret, event_types, ordered)
   VALUES ('k', 'kafka://$BOOT/t83?source=/t83', 'x', '[\"order.*\"]', true)" >/dev/null
# One worker: the relay keeps a key in the order its deliveries were
# queued, and two workers may queue two batches of one aggregate in either
# order (README, Ordered subscriptions); one worker queues in event order.
conf "$T/a.conf" 'workers = 1;' 'relay = { event_types = ["*"]; concurrency = 32; breaker = { failures = 0; }; };' 'log = { level = "notice"; };'
# event order is (created_at, id): n's order (one statement's now() is one time)
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT 'order.paid', 'order', ('00000000-0000-0000-0000-00000000000' || (n % 10))::uuid,
          jsonb_build_object('n', n), now() - interval '1 s' + n * interval '1 ms'
   FROM generate_series(1, 200) n ORDER BY n"
# 10 keyed by the producer (ordering_key, no aggregate): the message key is theirs
q "INSERT INTO events (event_type, ordering_key, payload, created_at)
   SELECT 'order.noted', 'customer-' || (n % 2), jsonb_build_object('n', n), now() - interval '1 s' + n * interval '1 ms'
   FROM generate_series(201, 210) n"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 210 60 || die "not all delivered"
wait "$KPID"
assert_eq "$?" 0 "the consumer read 210 messages"
psql -X -q -A -t -F $'\t' -c "SELECT d.id, e.id, e.event_type, coalesce(e.aggregate_type || '/' || e.aggregate_id, e.ordering_key, ''), d.body
   FROM deliveries d JOIN events e ON e.id = d.event_id" >"$T/deliveries.tsv"
check() { python3 - "$T" "$@" <<'PY'
import json, sys
t, what = sys.argv[1], sys.argv[2]
msgs = [json.loads(l) for l in open(t + "/topic.jsonl")]
rows = {}
for l in open(t + "/deliveries.tsv", encoding="utf-8"):
    did, eid, etype, key, body = l.rstrip("\n").split("\t", 4)
    rows[did] = dict(eid=eid, etype=etype, key=key, body=body)
if what == "ids":
    ids = [m["headers"].get("pgeventd-delivery-id") for m in msgs]
    print(len(ids), len(set(ids)) == len(ids) and set(ids) == set(rows))
elif what == "fields":
    bad = 0
    for m in msgs:
        h = m["headers"]
        r = rows[h["pgeventd-delivery-id"]]
        ok = (m["value"] == r["body"] and (m["key"] or "") == r["key"]
              and h.get("ce_id") == r["eid"] and h.get("ce_type") == r["etype"]
              and h.get("ce_specversion") == "1.0" and h.get("ce_source") == "/t83"
              and h.get("ce_time") == json.loads(r["body"])["timestamp"]
              and h.get("content-type") == "application/json")
        bad += not ok
    print(bad)
elif what == "order":  # per key: one partition, offsets in event order
    parts, last, bad = {}, {}, 0
    for m in sorted(msgs, key=lambda m: (m["partition"], m["offset"])):
        if not m["key"]:
            continue
        parts.setdefault(m["key"], set()).add(m["partition"])
        n = json.loads(m["value"])["data"]["n"]
        bad += n < last.get(m["key"], 0)
        last[m["key"]] = n
    print(bad, len(last), max(len(p) for p in parts.values()), len({p for s in parts.values() for p in s}) > 1)
PY
}
assert_eq "$(check ids)" "210 True" "each delivery once in the topic"
assert_eq "$(check fields)" 0 "key = ordering_key, else aggregate; value = body, ce_* headers"
assert_eq "$(check order)" "0 12 1 True" "12 keys (10 aggregates, 2 ordering keys), each in one partition and in event order, spread over partitions"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE applied AND error IS NULL")" 210 "one delivered attempt per delivery"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id,
   delivery_attempts b JOIN deliveries e ON e.id = b.delivery_id
   WHERE d.order_key = e.order_key AND a.id <> b.id
     AND b.started_at >= a.started_at AND b.started_at < a.started_at + a.duration_ms * interval '1 ms'")" 0 \
	"never two messages of one key unreported at once (delivery_attempts)"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
