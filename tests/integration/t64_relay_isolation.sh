#!/usr/bin/env bash
# Isolation: two receivers that accept and never answer, at the default
# 15 s timeout, hold only their own max_in_flight slots; a healthy
# subscription beside them keeps its throughput (>= 0.8 x the same run
# without them) and its deliveries arrive within 1 s of their events (p99).
. "$(dirname "$0")/lib.sh"
setup_db
W='"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]'
start_sink "{\"h\": {$W}, \"s1\": {$W, \"then\": \"hang\"}, \"s2\": {$W, \"then\": \"hang\"}}"
add_sub healthy h '["job.h"]'
add_sub silent1 s1 '["job.s"]'
add_sub silent2 s2 '["job.s"]'
assert_eq "$(q "SELECT string_agg(DISTINCT max_in_flight::text || '/' || timeout_ms, ',') FROM subscriptions")" \
	"16/15000" "every subscription has the default cap (16) and timeout (15 s)"
conf "$T/a.conf" 'shutdown_timeout_ms = 500;' 'relay = { event_types = ["job.*"]; };'
start_daemon a "$T/a.conf"
wait_log a 'relay started' 10 || die "relay did not start"

N=400
# Seconds from the first to the last healthy delivery of the events
# inserted after $1 (the sink's log line count before them).
drain_s() { # sink-lines-before
	python3 - "$T/sink.jsonl" "$1" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
t = sorted(r["t"] for r in rs if r["key"] == "h")
print("%.3f" % (t[-1] - t[0]))
PY
}
lines() { wc -l <"$T/sink.jsonl" 2>/dev/null || echo 0; }

# One burst of N healthy events: seconds to drain it at the receiver.
burst() {
	local before got
	before=$(lines)
	got=$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
	         WHERE s.name = 'healthy' AND d.status = 'delivered'")
	insert_events job.h "$N" "'{}'"
	wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
	          WHERE s.name = 'healthy' AND d.status = 'delivered'" $((got + N)) 60 ||
		die "healthy burst not delivered"
	drain_s "$before"
}

# Throughput without the silent receivers (nothing queued for them).
base1=$(burst)
base2=$(burst)
log "without silent receivers: $N deliveries in $base1 s, $base2 s"

# The silent receivers: 200 events, 400 deliveries, every request hangs.
insert_events job.s 200 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'in_flight'
          AND subscription_id <> (SELECT id FROM subscriptions WHERE name = 'healthy')" 32 20 ||
	die "the silent receivers' requests are not in flight"
sleep 0.5
assert_eq "$(q "SELECT count(*) FROM deliveries WHERE status = 'in_flight'
                AND subscription_id <> (SELECT id FROM subscriptions WHERE name = 'healthy')")" 32 \
	"the silent subscriptions hold 16 slots each, no more"
sil1=$(burst)
sil2=$(burst)
log "beside two silent receivers: $N deliveries in $sil1 s, $sil2 s"
ratio=$(python3 -c "print('%.2f' % (min($base1, $base2) / max(min($sil1, $sil2), 0.001)))")
log "throughput ratio (beside silent / alone, best of two each): $ratio"
assert_eq "$(python3 -c "print($ratio >= 0.8)")" True "healthy throughput beside silent receivers >= 0.8 x alone"

# Latency: 200 events, one every 75 ms, while the silent requests hang,
# time out after 15 s and are sent again.
before=$(lines)
{
	for i in $(seq 1 200); do
		echo "INSERT INTO events (event_type, payload) VALUES ('job.h', '{\"paced\": $i}');"
		echo "SELECT pg_sleep(0.075);"
	done
} | psql -X -q -o /dev/null
wait_sink 'r["key"] == "h" and r["body_ok"]' $((4 * N + 200)) 40 || die "paced events not delivered"
p99=$(paced_p99 "$before")
log "paced healthy deliveries beside silent receivers: p99 ${p99% *} s over ${p99#* } events"
assert_eq "${p99#* }" 200 "every paced event arrived"
assert_eq "$(q "SELECT count(*) > 0 FROM delivery_attempts WHERE error IS NOT NULL")" t \
	"silent requests timed out meanwhile"
assert_eq "$(python3 -c "print(${p99% *} <= 1.0)")" True "p99 from event to delivery <= 1 s"
held=$(q "SELECT count(*) FROM deliveries WHERE status = 'in_flight'
          AND subscription_id <> (SELECT id FROM subscriptions WHERE name = 'healthy')")
assert_eq "$([ "$held" -le 32 ] && echo yes)" yes "the silent subscriptions still hold at most 32 slots ($held)"
finish
