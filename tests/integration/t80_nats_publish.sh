#!/usr/bin/env bash
# NATS JetStream: 10 aggregates x 20 events plus 20 without an aggregate,
# relayed to a file-storage stream. The stream, read back, holds every
# delivery once: subject from the template, the body byte for byte,
# Nats-Msg-Id = delivery id, the ce-* headers; each aggregate's events in
# event order (an ordered subscription: the relay sends them as the workers
# queue them, never two of an aggregate at once, which delivery_attempts
# shows too). Deliveries put back to pending publish again and
# the stream drops the copies (Nats-Msg-Id dedupe). A subject no stream
# takes is a clear error in delivery_attempts, retried, never a crash.
. "$(dirname "$0")/lib.sh"
[ -n "${PGEVENTD_TEST_NATS:-}" ] || { echo "SKIP: no test nats-server (run scripts/test)"; exit 77; }
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
STREAM=T80_$$
SUBJ=t80.$$
setup_db
"$NS" "$PGEVENTD_TEST_NATS" create "$STREAM" "$SUBJ.>" || die "create stream"

# the CLI takes a broker url (and a secret that signs nothing)
P=("$BIN" -c "$T/migrate.conf")
out=$("${P[@]}" subscriptions add --name js --url "$PGEVENTD_TEST_NATS/$SUBJ.{event_type}?source=/t80" --ordered --events 'order.*' --secret 'not-a-signing-key' 2>&1)
assert_eq "$?" 0 "subscriptions add takes a nats:// url: $out"
q "INSERT INTO subscriptions (name, url, secret, event_types)
   VALUES ('nostream', '$PGEVENTD_TEST_NATS/nowhere.$$.{event_type}', 'x', '[\"order.created\"]')" >/dev/null
# One worker: the relay keeps a key in the order its deliveries were
# queued, and two workers may queue two batches of one aggregate in either
# order (README, Ordered subscriptions); one worker queues in event order.
conf "$T/a.conf" 'workers = 1;' 'relay = { event_types = ["*"]; concurrency = 32; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };'
# event order is (created_at, id): n's order (one statement's now() is one time)
q "INSERT INTO events (event_type, aggregate_type, aggregate_id, payload, created_at)
   SELECT CASE WHEN n % 3 = 0 THEN 'order.created' ELSE 'order.paid' END, 'order', ('00000000-0000-0000-0000-00000000000' || (n % 10))::uuid,
          jsonb_build_object('n', n, 'agg', n % 10), now() - interval '1 s' + n * interval '1 ms'
   FROM generate_series(1, 200) n ORDER BY n"
q "INSERT INTO events (event_type, payload) SELECT 'order.noted', jsonb_build_object('n', n) FROM generate_series(201, 220) n ORDER BY n"
# Nothing held back: the workers queue the deliveries batch by batch while
# the relay publishes them.
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' AND d.status = 'delivered'" 220 60 || die "not all delivered"
"$NS" "$PGEVENTD_TEST_NATS" wait "$STREAM" 220 10 >/dev/null
"$NS" "$PGEVENTD_TEST_NATS" dump "$STREAM" >"$T/stream.jsonl" || die "dump"
psql -X -q -A -t -F $'\t' -c "SELECT d.id, e.id, e.event_type, coalesce(e.aggregate_type, ''), coalesce(e.aggregate_id::text, ''), d.body
   FROM deliveries d JOIN events e ON e.id = d.event_id JOIN subscriptions s ON s.id = d.subscription_id
   WHERE s.name = 'js'" >"$T/deliveries.tsv"

check() { python3 - "$T" "$SUBJ" "$@" <<'PY'
import json, sys
t, subj, what = sys.argv[1], sys.argv[2], sys.argv[3]
msgs = [json.loads(l) for l in open(t + "/stream.jsonl")]
rows = {}
for l in open(t + "/deliveries.tsv", encoding="utf-8"):
    did, eid, etype, atype, aid, body = l.rstrip("\n").split("\t", 5)
    rows[did] = dict(eid=eid, etype=etype, atype=atype, aid=aid, body=body)
if what == "count":
    print(len(msgs))
elif what == "ids":  # every delivery once, by Nats-Msg-Id
    ids = [m["headers"].get("Nats-Msg-Id") for m in msgs]
    print(len(set(ids)) == len(ids) and set(ids) == set(rows))
elif what == "fields":  # subject, body, ce-* headers
    bad = 0
    for m in msgs:
        r = rows[m["headers"]["Nats-Msg-Id"]]
        h = m["headers"]
        ok = (m["subject"] == subj + "." + r["etype"] and m["data"] == r["body"]
              and h.get("ce-id") == r["eid"] and h.get("ce-type") == r["etype"]
              and h.get("ce-specversion") == "1.0" and h.get("ce-source") == "/t80"
              and h.get("ce-time") == json.loads(r["body"])["timestamp"]
              and h.get("ce-aggregatetype", "") == r["atype"]
              and h.get("ce-aggregateid", "") == r["aid"]
              and h.get("content-type") == "application/json")
        bad += not ok
    print(bad)
elif what == "order":  # per aggregate, stream order = event order (payload n)
    last, bad = {}, 0
    for m in msgs:
        d = json.loads(m["data"])
        if d["aggregate"] is None:
            continue
        k = d["aggregate"]["id"]
        if d["data"]["n"] < last.get(k, 0):
            bad += 1
        last[k] = d["data"]["n"]
    print(bad, len(last))
PY
}
assert_eq "$(check count)" 220 "the stream holds 220 messages"
assert_eq "$(check ids)" True "each delivery once, Nats-Msg-Id = delivery id"
assert_eq "$(check fields)" 0 "subject from the template, body byte for byte, ce-* headers"
assert_eq "$(check order)" "0 10" "each of the 10 aggregates in event order"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id,
   delivery_attempts b JOIN deliveries e ON e.id = b.delivery_id
   WHERE d.subscription_id = e.subscription_id AND d.order_key = e.order_key AND a.id <> b.id
     AND b.started_at >= a.started_at AND b.started_at < a.started_at + a.duration_ms * interval '1 ms'")" 0 \
	"never two publishes of one aggregate unacknowledged at once (delivery_attempts)"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' AND a.applied AND a.error IS NULL")" 220 "one delivered attempt per delivery"

# Dedupe: publish 5 deliveries again, as after a lost ack.
q "UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE id IN
   (SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' ORDER BY d.id LIMIT 5)" >/dev/null
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' AND d.status = 'delivered' AND d.attempt = 2" 5 30 || fail "the 5 were not published again"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE attempt = 2 AND error IS NULL AND response_body = 'duplicate'")" 5 "the stream reports the 5 copies as duplicates"
"$NS" "$PGEVENTD_TEST_NATS" dump "$STREAM" >"$T/stream.jsonl" || die "dump"
assert_eq "$(check count)" 220 "the stream still holds 220 messages"

# No stream for the subject: a clear error, retried, the daemon lives on.
wait_for "SELECT count(*) > 1 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nostream'" t 30 || fail "no attempts for the missing stream"
assert_match "$(q "SELECT DISTINCT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nostream' LIMIT 1")" "no stream takes subject nowhere\.$$\.order\.created" "a missing stream is named in delivery_attempts.error"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'nostream' AND d.status IN ('pending', 'in_flight', 'failed', 'dead')" | tr -d ' ')" \
	"$(q "SELECT count(*) FROM events WHERE event_type = 'order.created'")" "its deliveries are retried or dead, never delivered"
kill -0 "$DPID" 2>/dev/null && log "ok: the daemon is alive" || fail "the daemon died"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
