#!/usr/bin/env bash
# relay.block_private_networks applies to broker targets too: with it on,
# a nats:// target and a kafka:// target on 127.0.0.1 fail their
# deliveries at once with the reason in delivery_attempts.error, and
# nothing reaches the stream; turned off (SIGHUP), the same deliveries,
# retried, are published.
. "$(dirname "$0")/lib.sh"
[ -n "${PGEVENTD_TEST_NATS:-}" ] || { echo "SKIP: no test nats-server (run scripts/test)"; exit 77; }
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
STREAM=T86_$$
SUBJ=t86.$$
setup_db
"$NS" "$PGEVENTD_TEST_NATS" create "$STREAM" "$SUBJ.>" || die "create stream"
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('js', '$PGEVENTD_TEST_NATS/$SUBJ.{event_type}', 'x', '[\"*\"]'),
   ('kafka', 'kafka://127.0.0.1:9/t86', 'x', '[\"*\"]')" >/dev/null
conf "$T/a.conf" 'relay = { event_types = ["*"]; block_private_networks = true; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };'
insert_events job.created 3 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
err() { q "SELECT DISTINCT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = '$1'"; }
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' AND d.status IN ('failed', 'dead')" 3 30 || fail "nats: the deliveries did not fail"
assert_match "$(err js)" "^refused: broker 127\.0\.0\.1:[0-9]+ resolves to a loopback, private or link-local address \(relay\.block_private_networks\)$" "nats: the reason in delivery_attempts.error: $(err js)"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'kafka' AND d.status IN ('failed', 'dead')" 3 30 || fail "kafka: the deliveries did not fail"
assert_match "$(err kafka)" "^refused: broker 127\.0\.0\.1:9 resolves to a loopback" "kafka: the reason in delivery_attempts.error: $(err kafka)"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js'")" 3 "one attempt each: refused is not retried"
sleep 1
assert_eq "$("$NS" "$PGEVENTD_TEST_NATS" wait "$STREAM" 0 1)" 0 "nothing was published"
# turned off (a reload), the same deliveries go out
conf "$T/a.conf" 'relay = { event_types = ["*"]; block_private_networks = false; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };'
kill -HUP "$DPID"
sleep 1
q "UPDATE deliveries SET status = 'pending', next_attempt_at = now() WHERE subscription_id = (SELECT id FROM subscriptions WHERE name = 'js')" >/dev/null
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'js' AND d.status = 'delivered'" 3 30 || fail "not published once the option is off"
assert_eq "$("$NS" "$PGEVENTD_TEST_NATS" wait "$STREAM" 3 10)" 3 "the stream holds the 3 once the option is off"
kill -0 "$DPID" 2>/dev/null && log "ok: the daemon is alive" || fail "the daemon died"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
