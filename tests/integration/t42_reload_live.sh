#!/usr/bin/env bash
# SIGHUP applies the live keys while the daemon runs: poll_interval_ms (at
# once, not after the old interval), batch_size, max_attempts and backoff;
# keys that need a restart (workers) keep their running value and are
# named; /health shows the configuration in force.
. "$(dirname "$0")/lib.sh"
setup_db
metric() { # port name: the value of an unlabelled series
	http_get "$1" /metrics | awk -v n="$2" '$1 == n { print $2 }'
}
wait_metric() { # port name value seconds
	local deadline=$(($(date +%s) + $4))
	while [ "$(metric "$1" "$2")" != "$3" ]; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}
# The worker's claim connection has run a claim and committed it: it now
# waits (listen = false: only the poll interval wakes it).
wait_idle_after_claim() {
	wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgeventd worker-1'
	          AND state = 'idle' AND query LIKE 'SELECT ceil(extract(epoch from %'" 1 10
}
base='listen = false;'
conf "$T/a.conf" "$base" 'workers = 1;' 'poll_interval_ms = 60000;' 'batch_size = 1;' \
	'max_attempts = 5;' 'backoff = { base_ms = 60000; jitter = 0.0; };' \
	'health = { listen = "127.0.0.1:0"; };'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "no health port"
wait_log a 'worker started' 10 || die "daemon did not start"
wait_idle_after_claim || die "first claim not seen"

# Poll only, every 60 s: a new event waits.
E1=$(q "INSERT INTO events (event_type, payload) VALUES ('test.fail', '{}') RETURNING id")
q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 10)" >/dev/null
sleep 1.5
assert_eq "$(q "SELECT count(*) FROM events WHERE attempts > 0")" 0 "nothing claimed during a 60 s poll interval"

# Reload: a 100 ms poll interval applies now, not after the 60 s wait.
conf "$T/a.conf" "$base" 'workers = 1;' 'poll_interval_ms = 100;' 'batch_size = 1;' \
	'max_attempts = 5;' 'backoff = { base_ms = 60000; jitter = 0.0; };' \
	'health = { listen = "127.0.0.1:0"; };'
kill -HUP $DPID
wait_for "SELECT count(*) FROM test_effects" 10 5 || die "new poll_interval_ms not applied at once"
wait_log a 'changed key applied.*key=poll_interval_ms' 5 || fail "applied key not logged"
assert_eq "$(q "SELECT attempts FROM events WHERE id = '$E1'")" 1 "E1 failed once"
assert_eq "$(q "SELECT extract(epoch FROM next_attempt_at - now()) > 50 FROM events WHERE id = '$E1'")" t "E1 retries after the old 60 s backoff"
wait_metric "$PORT" pgeventd_batch_size_count 11 5 || fail "batch_size 1: not eleven batches"
b1=$(metric "$PORT" pgeventd_batch_size_count)

# Reload: batch_size 100, max_attempts 2, backoff 50 ms; workers = 4 needs a restart.
conf "$T/a.conf" "$base" 'workers = 4;' 'poll_interval_ms = 100;' 'batch_size = 100;' \
	'max_attempts = 2;' 'backoff = { base_ms = 50; jitter = 0.0; };' \
	'health = { listen = "127.0.0.1:0"; };'
kill -HUP $DPID
wait_log a 'changed key not applied.*key=workers.*takes effect at the next start' 5 ||
	fail "workers not named as needing a restart"
wait_log a 'SIGHUP: configuration re-read' 5 || die "reload not logged"
grep -q 'changed key not applied.*key=health.listen' "$T/a.log" &&
	fail "an unchanged restart key was reported"
q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 40)" >/dev/null
wait_for "SELECT count(*) FROM test_effects" 50 10 || die "40 more events not handled"
sleep 0.5 # the last batch's counter follows its commit
b2=$(metric "$PORT" pgeventd_batch_size_count)
[ $((b2 - b1)) -le 2 ] && log "ok: 40 events in $((b2 - b1)) batch(es) with batch_size 100" ||
	fail "batch_size 100 not applied: $((b2 - b1)) batches for 40 events"
E2=$(q "INSERT INTO events (event_type, payload) VALUES ('test.fail', '{}') RETURNING id")
wait_for "SELECT count(*) FROM event_dead_letters WHERE event_id = '$E2'" 1 5 ||
	fail "max_attempts 2 with a 50 ms backoff not applied"
assert_match "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$E2'")" \
	'^gave up after 2 attempts' "dead-lettered after the new max_attempts"

# /health shows the configuration in force: the live keys new, workers old.
h=$(http_get "$PORT" /health)
assert_eq "$(jget "$h" 'config,batch_size')" 100 "/health config: batch_size reloaded"
assert_eq "$(jget "$h" 'config,workers')" 1 "/health config: workers still the running value"
assert_eq "$(jget "$h" 'workers' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 1 "still one worker"

# A reload that lands while a batch runs shapes the wait that follows it:
# back to a 60 s poll interval, then, while a handler sleeps 1.5 s, 100 ms.
slow_conf() { # poll interval
	conf "$T/a.conf" "$base" 'workers = 1;' "poll_interval_ms = $1;" 'batch_size = 100;' \
		'max_attempts = 2;' 'backoff = { base_ms = 50; jitter = 0.0; };' \
		'health = { listen = "127.0.0.1:0"; };'
}
slow_conf 60000
kill -HUP $DPID
wait_log a 'SIGHUP: configuration re-read' 5 3 || die "third reload"
wait_idle_after_claim || die "no claim after the third reload"
S=$(q "INSERT INTO events (event_type, payload) VALUES ('test.slow', '{\"ms\": 1500}') RETURNING id")
# listen = false: the insert does not wake it, the 60 s poll would; force
# one claim by a reload with the same 60 s (a new configuration wakes it).
kill -HUP $DPID
wait_log a 'SIGHUP: configuration re-read' 5 4 || die "fourth reload"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgeventd worker-1' AND state = 'idle in transaction'" 1 5 ||
	die "slow event not claimed"
slow_conf 100
kill -HUP $DPID # lands while the handler sleeps
wait_log a 'SIGHUP: configuration re-read' 5 5 || die "fifth reload"
wait_for "SELECT processed FROM events WHERE id = '$S'" t 5 || die "slow event not handled"
q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}')" >/dev/null
wait_for "SELECT count(*) FROM test_effects" 52 3 ||
	fail "a reload during a batch did not shorten the wait after it"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
