#!/usr/bin/env bash
# NATS JetStream restarted mid-run: 2,000 events relayed while the server
# stops for 3 seconds and starts again on the same storage. Publishes
# without an ack retry (the deliveries' own retries); when it is back, the
# stream holds each delivery exactly once: none lost, and the copies of
# publishes whose ack was lost dropped by Nats-Msg-Id.
. "$(dirname "$0")/lib.sh"
command -v nats-server >/dev/null || { echo "SKIP: no nats-server"; exit 77; }
. "${PGEVENTD_SRCDIR:?}/scripts/nats-server.sh"
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
trap 'nats_stop; cleanup' EXIT
nats_start || die "nats-server"
URL=$PGEVENTD_TEST_NATS
setup_db
"$NS" "$URL" create T81 't81.>' || die "create stream"
q "INSERT INTO subscriptions (name, url, secret, event_types, timeout_ms)
   VALUES ('js', '$URL/t81.{event_type}', 'x', '[\"*\"]', 1000)" >/dev/null
conf "$T/a.conf" 'relay = { event_types = ["*"]; concurrency = 64; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 1000; }; };' \
	'log = { level = "warning"; };'
insert_events job.created 2000 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) >= 300 FROM deliveries WHERE status = 'delivered'" t 60 || die "no progress"
nats_pause
log "nats-server stopped at $(q "SELECT count(*) FROM deliveries WHERE status = 'delivered'") delivered"
sleep 3
assert_eq "$(q "SELECT count(*) > 0 FROM delivery_attempts WHERE error IS NOT NULL")" t "attempts failed while the server was down"
nats_resume || die "nats-server did not start again"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 2000 120 || die "not all delivered after the restart"
"$NS" "$URL" wait T81 2000 10 >/dev/null
"$NS" "$URL" dump T81 >"$T/stream.jsonl" || die "dump"
q "SELECT id FROM deliveries" | sort >"$T/ids"
jq -r '.headers["Nats-Msg-Id"]' "$T/stream.jsonl" | sort >"$T/stream-ids"
assert_eq "$(wc -l <"$T/stream-ids")" 2000 "the stream holds 2000 messages"
assert_eq "$(sort -u "$T/stream-ids" | wc -l)" 2000 "no delivery twice"
assert_eq "$(comm -3 "$T/ids" "$T/stream-ids" | wc -l)" 0 "every delivery in the stream"
assert_eq "$(q "SELECT count(*) > 2000 FROM delivery_attempts")" t "some deliveries took more than one attempt"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
