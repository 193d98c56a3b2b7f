#!/usr/bin/env bash
# run --once is a batch job: it gives up on a database it cannot reach
# within 30 s and exits 69, at start or when the database goes away
# during the run; a signal before it is done exits 69 (never connected)
# or 75 (run it again), never 0.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/down.conf" 'database = { conninfo = "host=127.0.0.1 port=1 connect_timeout=2"; };'
conf "$T/a.conf" 'workers = 1;' 'batch_size = 5;'

# Run in the background with a watchdog of our own; sets RC and SECS.
once() { # name conf [signal-after-seconds]
	local start=$(date +%s) pid
	"$BIN" -c "$2" run --once >"$T/$1.log" 2>&1 &
	pid=$!
	PIDS="$PIDS $pid"
	if [ -n "${3:-}" ]; then
		sleep "$3"
		kill -TERM "$pid"
	fi
	( sleep 60 && kill -9 "$pid" ) 2>/dev/null &
	local guard=$!
	wait "$pid"
	RC=$?
	kill "$guard" 2>/dev/null
	SECS=$(($(date +%s) - start))
}

once down "$T/down.conf"
assert_eq "$RC" 69 "database unreachable from the start: exit 69"
[ "$SECS" -ge 25 ] && [ "$SECS" -le 45 ] && log "ok: gave up after $SECS s" || fail "gave up after $SECS s, want about 30"
assert_match "$(cat "$T/down.log")" 'run --once gives up' "says it gives up"

once down-term "$T/down.conf" 2
assert_eq "$RC" 69 "SIGTERM while waiting for the database: exit 69, not 0"

# Stopped before it handled everything due: 75, and the rest stays queued.
insert_events test.slow 100 "'{\"ms\": 100}'"
"$BIN" -c "$T/a.conf" run --once >"$T/term.log" 2>&1 &
pid=$!
PIDS="$PIDS $pid"
wait_for "SELECT count(*) > 0 FROM events WHERE processed" t 20 || die "nothing processed"
kill -TERM "$pid"
wait "$pid"
assert_eq "$?" 75 "SIGTERM before the queue was drained: exit 75"
left=$(q "SELECT count(*) FROM events WHERE NOT processed")
[ "$left" -gt 0 ] && log "ok: $left events left for the next run" || fail "nothing left: the test did not interrupt"

# Drained: 0.
"$BIN" -c "$T/a.conf" run --once >"$T/drain.log" 2>&1
assert_eq "$?" 0 "a run that handles everything due: exit 0"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "every event handled"

# The database goes away during the run: given up within about 30 s.
insert_events test.slow 100 "'{\"ms\": 100}'"
. "$PGEVENTD_SRCDIR/scripts/pg-cluster.sh"
start=$(date +%s)
"$BIN" -c "$T/a.conf" run --once >"$T/lost.log" 2>&1 &
pid=$!
PIDS="$PIDS $pid"
wait_for "SELECT count(*) > 100 FROM events WHERE processed" t 20 || die "nothing processed"
pgc_pause || die "pg_ctl stop"
log "PostgreSQL stopped"
( sleep 60 && kill -9 "$pid" ) 2>/dev/null &
guard=$!
wait "$pid"
rc=$?
kill "$guard" 2>/dev/null
secs=$(($(date +%s) - start))
pgc_resume || die "pg_ctl start"
assert_eq "$rc" 69 "database lost during the run: exit 69"
[ "$secs" -le 50 ] && log "ok: gave up after $secs s" || fail "gave up after $secs s"
finish
