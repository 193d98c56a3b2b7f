#!/usr/bin/env bash
# Kafka failures: brokers that do not answer, and a topic the cluster does
# not have. Each is a clear error in delivery_attempts.error, retried per
# the policy, never delivered, never a crash; the SASL password (the
# subscription's secret) reaches no log line and no error; a password in
# the url, or a librdkafka property not on the allowlist (one that loads
# a shared object or runs a command), is refused by subscriptions add
# and, in a row written by hand, fails its delivery as unsendable.
. "$(dirname "$0")/lib.sh"
KM=${PGEVENTD_BUILDDIR:?}/tests/kafka_mock
[ -x "$KM" ] || { echo "SKIP: no tests/kafka_mock"; exit 77; }
PASS=t84-sasl-pass-Hq27v
setup_db
KAFKA_MOCK_MISSING=t84-missing-job.created "$KM" "$T/bootstrap" t84 1 1000000 120 >/dev/null 2>"$T/kafka_mock.log" &
PIDS="$PIDS $!"
for i in $(seq 1 100); do [ -s "$T/bootstrap" ] && break; sleep 0.1; done
BOOT=$(cat "$T/bootstrap")
[ -n "$BOOT" ] || die "no mock cluster"
# a port nothing listens on
DOWN=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
q "INSERT INTO subscriptions (name, url, secret, event_types, timeout_ms) VALUES
   ('down', 'kafka://alice@$DOWN/t84?security.protocol=SASL_PLAINTEXT', '$PASS', '[\"*\"]', 1500),
   ('notopic', 'kafka://$BOOT/t84-missing-{event_type}?topic.metadata.propagation.max.ms=500', 'x', '[\"*\"]', 3000),
   ('inurl', 'kafka://$BOOT/t84?sasl.password=$PASS', 'x', '[\"*\"]', 1500),
   ('plugin', 'kafka://$BOOT/t84?plugin.library.paths=$T/evil.so', 'x', '[\"*\"]', 1500)" >/dev/null
P=("$BIN" -c "$T/migrate.conf")
for prop in "plugin.library.paths=$T/evil.so" "sasl.kerberos.kinit.cmd=touch%20$T/pwned" "ssl.engine.location=$T/e.so"; do
	out=$("${P[@]}" subscriptions add --name bad --url "kafka://$BOOT/t84?linger.ms=5&$prop" 2>&1)
	assert_eq "$?" 64 "subscriptions add refuses ${prop%%=*}: $out"
	assert_match "$out" "Kafka property ${prop%%=*} is not one a url may set" "the error names the property"
done
out=$("${P[@]}" subscriptions add --name good --events nothing.matches --url "kafka://$BOOT/t84?security.protocol=PLAINTEXT&linger.ms=5&compression.type=lz4" 2>&1)
assert_eq "$?" 0 "subscriptions add takes allowed properties: $out"
conf "$T/a.conf" 'relay = { event_types = ["*"]; breaker = { failures = 0; }; backoff = { base_ms = 200; cap_ms = 500; }; };' \
	'log = { level = "debug"; };'
insert_events job.created 3 "jsonb_build_object('n', generate_series)"
start_daemon a "$T/a.conf"
attempts() { q "SELECT count(*) >= $2 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = '$1' AND a.error IS NOT NULL"; }
lasterr() { q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = '$1' ORDER BY a.id DESC LIMIT 1"; }
wait_for "$(printf "SELECT count(*) >= 6 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'down'")" t 60 || fail "brokers down: not retried"
assert_match "$(lasterr down)" "^Kafka: .*timed out" "brokers down: the message timed out, retried: $(lasterr down)"
wait_for "$(printf "SELECT count(*) >= 3 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'notopic'")" t 60 || fail "missing topic: no attempt"
assert_match "$(lasterr notopic)" "topic t84-missing-job\.created does not exist" "missing topic: named in the error: $(lasterr notopic)"
wait_for "$(printf "SELECT count(*) >= 1 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'inurl'")" t 60 || fail "password in the url: no attempt"
assert_match "$(lasterr inurl)" "Kafka property sasl.password is not one a url may set" "a password in the url is refused: $(lasterr inurl)"
wait_for "$(printf "SELECT count(*) >= 1 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'plugin'")" t 60 || fail "plugin.library.paths: no attempt"
assert_match "$(lasterr plugin)" "Kafka property plugin.library.paths is not one a url may set" "plugin.library.paths is refused: $(lasterr plugin)"
assert_eq "$(q "SELECT count(*) FROM deliveries WHERE status = 'delivered'")" 0 "nothing delivered"
kill -0 "$DPID" 2>/dev/null && log "ok: the daemon is alive" || fail "the daemon died"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
assert_eq "$(grep -c -- "$PASS" "$T/a.log")" 0 "the SASL password is in no log line"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts WHERE error LIKE '%$PASS%'")" 0 "nor in an error"
finish
