#!/usr/bin/env bash
# Wake-ups: producers notify only while a worker sleeps (and never for a
# statement that inserted nothing), and an event or a delivery that arrives
# while every worker (or the relay) is busy is taken as soon as one is
# free, with poll_interval_ms = 30000.
. "$(dirname "$0")/lib.sh"
setup_db

# ---- the trigger: who gets a NOTIFY ------------------------------------
# listen_for SECONDS [lock]: a session that LISTENs (holding the sleep lock,
# as a sleeping worker does, when asked) and prints what it received.
listen_for() {
	{
		[ "${2:-}" = lock ] && echo "SELECT pg_advisory_lock(1885824374, 2);"
		echo "LISTEN pgeventd_events;"
		echo "SELECT pg_sleep($1);"
		echo "SELECT 'done';"
	} | psql -X -q -A -t >"$T/listen.out" 2>&1 &
	LPID=$!
	sleep 0.5
}
notes() { grep -c 'Asynchronous notification "pgeventd_events"' "$T/listen.out"; }

listen_for 1.5
q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}')"
wait $LPID
assert_eq "$(notes)" 0 "no worker asleep: an INSERT notifies nobody"

listen_for 1.5 lock
q "INSERT INTO events (event_type, payload, idempotency_key) VALUES ('test.effect', '{}', 'k1')"
wait $LPID
assert_eq "$(notes)" 1 "a worker asleep: an INSERT notifies it"

listen_for 1.5 lock
q "INSERT INTO events (event_type, payload, idempotency_key) VALUES ('test.effect', '{}', 'k1')
   ON CONFLICT (idempotency_key) DO NOTHING"
q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' WHERE false"
wait $LPID
assert_eq "$(notes)" 0 "a statement that inserts nothing notifies nobody"
q "DELETE FROM events"

# ---- events: every worker busy, poll_interval_ms = 30000 -----------------
conf "$T/a.conf" 'workers = 1;' 'poll_interval_ms = 30000;' 'listen = true;'
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"
sleep 0.5
q "INSERT INTO events (event_type, payload) VALUES ('test.slow', '{\"ms\": 1500}')"
sleep 0.5 # the only worker is now inside the slow handler
T0=$(q "SELECT clock_timestamp()")
q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}')"
wait_for "SELECT count(*) FROM test_effects WHERE event_type = 'test.effect'" 1 10 ||
	fail "event inserted during a busy batch not handled within 10 s"
ms=$(q "SELECT round(extract(epoch FROM min(created_at) - '$T0') * 1000) FROM test_effects
        WHERE event_type = 'test.effect'")
[ "${ms:-99999}" -lt 2500 ] && log "ok: handled $ms ms after its insert (the batch ahead took ~1 s more)" ||
	fail "handled ${ms:-never} ms after its insert (want < 2500: as soon as the worker is free)"

# Twice more, the insert landing at other moments of the batch.
for at in 0.1 1.2; do
	q "TRUNCATE test_effects"
	q "INSERT INTO events (event_type, payload) VALUES ('test.slow', '{\"ms\": 1500}')"
	sleep "$at"
	q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}')"
	wait_for "SELECT count(*) FROM test_effects WHERE event_type = 'test.effect'" 1 4 ||
		fail "insert $at s into a busy batch: not handled within 4 s"
done
stop_daemon $DPID

# ---- deliveries: the relay's only slot busy -------------------------------
CFG='{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
       "script": ["slow:1.5"], "then": "200"}}'
start_sink "$CFG"
add_sub a a '["job.*"]'
conf "$T/r.conf" 'workers = 1;' 'poll_interval_ms = 30000;' \
	'relay = { event_types = ["job.*"]; concurrency = 1; };'
start_daemon r "$T/r.conf"
wait_log r 'worker started' 10 || die "daemon did not start"
sleep 0.5
q "INSERT INTO events (event_type, payload) VALUES ('job.first', '{}')"
wait_sink 'r["event_type"] == "job.first"' 1 10 || die "first delivery not sent"
T0=$(date +%s%3N)
q "INSERT INTO events (event_type, payload) VALUES ('job.second', '{}')"
wait_sink 'r["event_type"] == "job.second"' 1 10 || fail "delivery queued while the relay was busy: not sent within 10 s"
T1=$(python3 -c "
import json
print(int(min(json.loads(l)['t'] for l in open('$T/sink.jsonl') if json.loads(l)['event_type'] == 'job.second') * 1000))")
[ $((T1 - T0)) -lt 2500 ] && log "ok: second delivery sent $((T1 - T0)) ms after its event" ||
	fail "second delivery sent $((T1 - T0)) ms after its event (want < 2500)"
stop_daemon $DPID
finish
