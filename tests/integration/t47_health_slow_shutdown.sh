#!/usr/bin/env bash
# /health keeps answering through a slow shutdown: a retention pass held up
# by a lock delays the exit while /health is requested in a loop; every
# answer is a whole one, nothing the server reads has been freed (under
# ASan a use-after-free of the relay's counters aborts the process), and
# the exit is 0.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'health = { listen = "127.0.0.1:0"; };' \
	'relay = { event_types = ["x.*"]; };' \
	'retention = { delivery_attempts_after = "1s"; interval = "1s"; };'

# Hold delivery_attempts locked: every retention pass waits on it (for up
# to its 5 s statement timeout).
psql -X -q -c "BEGIN; LOCK TABLE delivery_attempts IN ACCESS EXCLUSIVE MODE;
	SELECT pg_sleep(60); COMMIT" >/dev/null 2>&1 &
LOCKER=$!
PIDS="$PIDS $LOCKER"
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "health server did not start"
wait_for "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgeventd retention'
	AND wait_event_type = 'Lock'" 1 20 || die "the retention pass is not waiting on the lock"
H=$(http_get "$PORT" /health)
assert_eq "$(http_status)" 200 "/health answers before the shutdown"
assert_match "$H" '"relay": \{' "/health has its relay section"

kill -TERM $DPID
wait_log a 'msg="pgeventd stopped"' 10 || die "the workers did not stop"
# The retention pass still holds the exit up: ask for /health meanwhile.
n=0 answered=0 bad=0
while kill -0 $DPID 2>/dev/null && [ $n -lt 400 ]; do
	n=$((n + 1))
	H=$(curl -s --max-time 2 -o - -w '\n%{http_code}' "http://127.0.0.1:$PORT/health")
	code=${H##*$'\n'}
	case "$code" in
	200) answered=$((answered + 1))
	     printf '%s' "$H" | grep -q '"shutting down"' || bad=$((bad + 1)) ;;
	000) ;; # the server has stopped: the process is about to exit
	*) bad=$((bad + 1)) ;;
	esac
	sleep 0.02
done
wait $DPID
rc=$?
assert_eq "$rc" 0 "exit 0 after the slow shutdown"
[ "$answered" -gt 5 ] && log "ok: /health answered $answered times during the slow shutdown" ||
	fail "/health answered only $answered times during the slow shutdown"
assert_eq "$bad" 0 "every answer said 200 and shutting down"
assert_eq "$(grep -c 'AddressSanitizer\|runtime error' "$T/a.log")" 0 "no sanitizer report"
kill $LOCKER 2>/dev/null
finish
