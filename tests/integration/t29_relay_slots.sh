#!/usr/bin/env bash
# Results that wait while a round is out hold their slots: a claim never
# takes more than relay.concurrency minus the deliveries in flight minus
# the results not sent yet. Rounds are made slow (a trigger sleeps in each
# one) and a subscription's receiver refuses connections (each attempt
# fails at once, retried within milliseconds), so results pile up while
# rounds are out and the claims between rounds come at once; events keep
# coming (each a NOTIFY that claims at once). A NATS server that is down
# fails every message in one progress() call. Before the
# fix a claim counted only the deliveries in flight, and the results of
# the next turn were written past the end of the relay's result slots
# (reported by the ASan build; a plain build may corrupt its heap).
. "$(dirname "$0")/lib.sh"
setup_db
CFG='{"slow": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "then": "slow:0.02"}}'
start_sink "$CFG"
CLOSED=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
add_sub slow slow '["job.*"]'
q "INSERT INTO subscriptions (name, url, secret, event_types, max_attempts)
   VALUES ('down', 'nats://127.0.0.1:$CLOSED/t29', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '[\"job.*\"]', 100)" >/dev/null
q "CREATE FUNCTION t29_slow_round() RETURNS trigger LANGUAGE plpgsql AS
   \$\$BEGIN PERFORM pg_sleep(0.01); RETURN NULL; END\$\$;
   CREATE TRIGGER t29_slow_round AFTER INSERT ON delivery_attempts
   FOR EACH STATEMENT EXECUTE FUNCTION t29_slow_round()"
conf "$T/a.conf" 'shutdown_timeout_ms = 2000;' 'poll_interval_ms = 50;' 'relay = { event_types = ["job.*"]; concurrency = 4;
  backoff = { base_ms = 1; cap_ms = 5; jitter = 0.0; }; breaker = { failures = 0; }; disable_after_ms = 0; };'
start_daemon a "$T/a.conf"
for _ in $(seq 1 150); do insert_events job.created 1 "'{}'"; sleep 0.02; done
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
           WHERE s.name = 'slow' AND d.status = 'delivered'" 150 60 || fail "not every delivery of the healthy subscription went out"
assert_match "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                    JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'down'")" '^[1-9][0-9]+$' \
	"the failing subscription was attempted over and over"
kill -0 "$DPID" 2>/dev/null || fail "the daemon died"
assert_eq "$(grep -c 'AddressSanitizer\|more results than slots' "$T/a.log")" 0 "no result written past the slots"
stop_daemon "$DPID"; rc=$?
assert_eq "$rc" 0 "SIGTERM: exit 0"
finish
