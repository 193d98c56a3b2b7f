#!/usr/bin/env bash
# /health, /health/live, /health/ready and /metrics against a running
# daemon: status codes, JSON fields after known events, Prometheus format
# (promtool), 404/405/HEAD, and no secret in any response or log line.
. "$(dirname "$0")/lib.sh"
setup_db
SECRET=TopSecret42xyz
conf "$T/a.conf" 'health = { listen = "127.0.0.1:0"; };' 'backoff = { base_ms = 600000; };' \
	"database = { conninfo = \"password=$SECRET application_name=x\"; };"
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "health server did not start"
log "health server on port $PORT"
q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}'), ('test.effect', '{}'),
   ('test.effect', '{}'), ('test.permanent', '{}'), ('nope.unknown', '{}')"
q "INSERT INTO events (event_type, payload, created_at) VALUES ('test.fail', '{}', now() - interval '1 hour')"
wait_for "SELECT count(*) FROM events WHERE attempts = 0" 0 20 || die "events not handled"

# The queue figures are sampled every 5 s: wait for one that saw the dead letters.
for _ in $(seq 1 100); do
	H=$(http_get "$PORT" /health)
	[ "$(jget "$H" 'queue,dead_letters')" = 2 ] && break
	sleep 0.1
done
assert_eq "$(http_status)" 200 "/health: 200"
assert_eq "$(jget "$H" status)" ok "status ok"
assert_eq "$(jget "$H" service)" pgeventd "service"
assert_eq "$(jget "$H" version)" "$("$BIN" version | awk '{ print $NF }')" "version"
assert_match "$(jget "$H" uptime_s)" '^[0-9]+$' "uptime_s"
assert_match "$(jget "$H" started_at)" '^20[0-9-]+T[0-9:.]+Z$' "started_at"
assert_eq "$(jget "$H" 'workers,0,connected')$(jget "$H" 'workers,1,connected')" truetrue "both workers connected"
assert_match "$(jget "$H" 'workers,0,last_claim_at')" '^20' "last_claim_at"
assert_eq "$(jget "$H" 'stats,processed')" 6 "stats.processed"
assert_eq "$(jget "$H" 'stats,retried')" 1 "stats.retried"
assert_eq "$(jget "$H" 'stats,succeeded')" 3 "stats.succeeded"
assert_eq "$(jget "$H" 'stats,dead_lettered')" 2 "stats.dead_lettered"
assert_match "$(jget "$H" 'stats,last_processed_at')" '^20' "stats.last_processed_at"
assert_eq "$(jget "$H" 'queue,pending')" 1 "queue.pending: the retrying event"
assert_eq "$(jget "$H" 'queue,dead_letters')" 2 "queue.dead_letters"
assert_eq "$(q "SELECT ($(jget "$H" 'queue,oldest_pending_age_s'))::numeric = 0")" t "queue.oldest_pending_age_s: 0, the only pending event waits in backoff (not late)"
assert_eq "$(jget "$H" 'config,workers')" 2 "config shows workers"
assert_eq "$(jget "$H" 'config,database.conninfo')" "password=*** application_name=x" "conninfo redacted"
assert_eq "$(q "SELECT count(*) FROM jsonb_array_elements(\$j\$$H\$j\$::jsonb->'registry') r
               WHERE r->>'event_type' = 'test.effect' AND r->>'description' <> ''")" 1 "registry lists test.effect"

L=$(http_get "$PORT" /health/live)
assert_eq "$(http_status) $L" "200 live" "/health/live"
R=$(http_get "$PORT" /health/ready)
assert_eq "$(http_status) $R" "200 ready" "/health/ready"

M=$(http_get "$PORT" /metrics)
assert_eq "$(http_status)" 200 "/metrics: 200"
assert_match "$M" 'pgeventd_events_total\{event_type="test.effect",outcome="ok"\} 3' "events_total ok by type"
assert_match "$M" 'pgeventd_events_total\{event_type="unknown",outcome="dead_letter"\} 1' "unknown types share one label"
assert_match "$M" 'pgeventd_events_total\{event_type="test.permanent",outcome="dead_letter"\} 1' "dead letters counted"
assert_match "$M" 'pgeventd_event_duration_seconds_count\{event_type="test.effect"\} 3' "handler durations observed"
assert_match "$M" 'pgeventd_event_lag_seconds_count 5' "lag observed for every handler run"
assert_match "$M" 'pgeventd_queue_pending 1' "queue_pending gauge"
assert_match "$M" 'pgeventd_db_connected\{worker="worker-2"\} 1' "db_connected per worker"
assert_match "$M" 'pgeventd_dead_letters 2' "dead_letters gauge"
assert_match "$M" 'pgeventd_build_info\{version="[0-9.]+"\} 1' "build_info"
assert_match "$M" 'process_start_time_seconds [0-9]' "process start time"
assert_eq "$(printf '%s\n' "$M" | grep -c 'nope.unknown')" 0 "producer-chosen types never become labels"
ctype=$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$PORT/metrics")
assert_match "$ctype" '^text/plain; version=0.0.4' "metrics content type"
if command -v promtool >/dev/null; then
	out=$(printf '%s\n' "$M" | promtool check metrics 2>&1)
	assert_eq "$?|$out" "0|" "promtool check metrics accepts the live output"
else
	log "promtool missing: format check skipped"
fi

http_get "$PORT" /nope >/dev/null
assert_eq "$(http_status)" 404 "unknown path: 404"
http_get "$PORT" /health -X POST >/dev/null
assert_eq "$(http_status)" 405 "POST: 405"
head=$(curl -s -I --max-time 5 "http://127.0.0.1:$PORT/health")
assert_match "$head" '^HTTP/1.1 200' "HEAD /health: 200"
assert_match "$head" 'Connection: close' "Connection: close"

all=$(for p in /health /health/live /health/ready /metrics /nope; do http_get "$PORT" $p; done)
assert_eq "$(printf '%s' "$all" | grep -c "$SECRET")" 0 "the password is in no response"
assert_eq "$(grep -c "$SECRET" "$T/a.log")" 0 "the password is in no log line"

# A second daemon on the same port: clear error, exit 69, before any work.
conf "$T/b.conf" "health = { listen = \"127.0.0.1:$PORT\"; };"
"$BIN" -c "$T/b.conf" run >"$T/b.log" 2>&1
assert_eq "$?" 69 "address in use: exit 69"
assert_match "$(cat "$T/b.log")" "cannot listen on 127.0.0.1:$PORT" "names the address"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
