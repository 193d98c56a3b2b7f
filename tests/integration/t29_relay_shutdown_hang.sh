#!/usr/bin/env bash
# Shutdown with a round of results out and a database that does not
# answer (its session stopped with SIGSTOP): the relay waits for the round
# until shutdown_timeout_ms, then closes its connection and exits; the
# result stays unrecorded (its lease expires: at least once). Before the
# fix it blocked in PQgetResult until the database answered. (No claim
# between rounds: poll_interval_ms is long, and nothing else is queued.)
. "$(dirname "$0")/lib.sh"
setup_db
CFG='{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "then": "slow:1.5"}}'
start_sink "$CFG"
add_sub a a '["job.*"]'
conf "$T/a.conf" 'shutdown_timeout_ms = 1000;' 'poll_interval_ms = 60000;' 'relay = { event_types = ["job.*"]; };'
insert_events job.created 1 "'{}'"
start_daemon a "$T/a.conf"
wait_sink 'True' 1 20 || die "not sent"
BPID=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgeventd relay' AND datname = current_database()")
[ -n "$BPID" ] || die "no relay session"
log "relay session: $BPID"
resume() { kill -CONT "$BPID" 2>/dev/null; }
trap 'resume; cleanup' EXIT
kill -STOP "$BPID"
# the answer comes; its round goes out to the stopped session
wait_log a 'msg="delivery attempted"' 3 && fail "a round came back from a stopped session"
start=$(date +%s)
kill -TERM "$DPID"
for _ in $(seq 1 100); do
	kill -0 "$DPID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$DPID" 2>/dev/null; then
	fail "the daemon still runs 10 s after SIGTERM with shutdown_timeout_ms = 1000"
	resume
fi
wait "$DPID"
elapsed=$(($(date +%s) - start))
resume
assert_match "$elapsed" '^[0-4]$' "it stopped within the shutdown timeout and the grace: ${elapsed} s"
assert_match "$(grep 'msg="delivery attempted"' "$T/a.log")" 'outcome=unrecorded' "the result of the round is logged unrecorded"
wait_log a 'the database did not answer before the shutdown timeout' 1 || fail "the relay says why"
finish
