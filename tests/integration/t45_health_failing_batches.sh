#!/usr/bin/env bash
# A loop that cannot complete a batch is not making progress. Run as a role
# that may only read the tables, every claim fails with "permission denied":
# /health turns degraded at once with the error in its reasons, /health/ready
# says why, /health/live answers 503 after stall_timeout_ms and the systemd
# watchdog is no longer fed; the relay's claims likewise. Once the rights are granted, the event is
# handled and everything is ok again.
. "$(dirname "$0")/lib.sh"
setup_db
R="t45_reader_$$"
q "CREATE ROLE $R LOGIN" >/dev/null || die "create role"
q "GRANT CONNECT ON DATABASE \"$PGDATABASE\" TO $R; GRANT USAGE ON SCHEMA public TO $R;
   GRANT SELECT ON ALL TABLES IN SCHEMA public TO $R" >/dev/null || die "grant select"
conf "$T/a.conf" "database = { conninfo = \"user=$R\"; };" 'workers = 2;' \
	'stall_timeout_ms = 2000;' 'health = { listen = "127.0.0.1:0"; };' \
	'relay = { event_types = ["x.*"]; };'
# WATCHDOG_USEC alone turns the watchdog logic on; its pings go nowhere.
WATCHDOG_USEC=400000 start_daemon a "$T/a.conf"
t0=$(date +%s%N)
PORT=$(health_port a) || die "health server did not start"
insert_events test.effect 1 "'{}'"

status() { jget "$(http_get "$PORT" /health)" status; }
st=
for _ in $(seq 1 30); do st=$(status); [ "$st" != ok ] && break; sleep 0.1; done
H=$(http_get "$PORT" /health)
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$st" degraded "degraded within ${ms} ms of the start (before any stall limit)"
assert_match "$(jget "$H" reasons)" 'workers cannot complete a batch: ERROR: +permission denied for table (events|pgeventd_keys)' \
	"the reasons carry the error"
assert_match "$(jget "$H" 'workers,0,error')" 'permission denied for table (events|pgeventd_keys)' "so does the worker"
for _ in $(seq 1 30); do
	H=$(http_get "$PORT" /health)
	[ -n "$(jget "$H" 'relay,error')" ] && break
	sleep 0.1
done
assert_match "$(jget "$H" reasons)" 'relay cannot claim deliveries: ERROR: +permission denied for table deliveries' \
	"the relay's failing claim too"
R1=$(http_get "$PORT" /health/ready)
assert_eq "$(http_status)" 503 "not ready while no worker can complete a batch"
assert_match "$R1" '^not ready: no worker can complete a batch: .*permission denied' "ready says why"

# /health/live: 503 once stall_timeout_ms (2 s) passed without progress.
code=
for _ in $(seq 1 100); do
	L=$(http_get "$PORT" /health/live); code=$(http_status)
	[ "$code" = 503 ] && break
	sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$code" 503 "/health/live fails while batches fail"
# the workers and the relay both stall here: whichever passed the limit
# first is named, and once both have, a worker (the workers come first)
assert_match "$L" '^(worker-[12]|relay) stalled for [0-9]+ s' "live names the stalled loop"
for _ in $(seq 1 20); do
	L=$(http_get "$PORT" /health/live)
	[[ $L =~ ^worker ]] && break
	sleep 0.1
done
assert_match "$L" '^worker-[12] stalled for [0-9]+ s' "a worker whose batches all fail is a stalled loop"
[ "$ms" -ge 1900 ] && log "ok: not before the stall timeout (${ms} ms)" || fail "live failed after ${ms} ms"
wait_log a 'msg="watchdog not fed: a loop is stalled"' 5 || fail "the watchdog is still fed"
sleep 4 # past 3 poll intervals + 5 s: no progress at all is down
assert_eq "$(status)" down "/health is down after the stall"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 0 "the event was not handled"

q "GRANT ALL ON ALL TABLES IN SCHEMA public TO $R;
   GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO $R" >/dev/null || die "grant all"
wait_for "SELECT count(*) FROM test_effects" 1 15 || fail "the event was not handled after the grant"
for _ in $(seq 1 100); do [ "$(status)" = ok ] && break; sleep 0.1; done
H=$(http_get "$PORT" /health)
assert_eq "$(http_status) $(jget "$H" status) $(jget "$H" reasons)" "200 ok []" "ok again after the grant"
assert_eq "$(http_get "$PORT" /health/live) $(http_status)" "live 200" "live again"
assert_eq "$(http_get "$PORT" /health/ready) $(http_status)" "ready 200" "ready again"
wait_log a 'msg="claim loops turning again: watchdog fed"' 5 || fail "the watchdog is not fed again"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
q "DROP OWNED BY $R; DROP ROLE $R" >/dev/null
finish
