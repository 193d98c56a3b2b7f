#!/usr/bin/env bash
# systemd notify without systemd: the test owns the NOTIFY_SOCKET datagram
# socket and checks the messages and their order: STATUS while connecting,
# READY=1 only once the database answered, migrations are current and the
# health socket listens; WATCHDOG=1 only while the claim loops turn (a
# wedged loop stops it); RELOADING=1 + MONOTONIC_USEC then READY=1 on
# SIGHUP; STOPPING=1 on SIGTERM.
. "$(dirname "$0")/lib.sh"
grep -q '^#define HAVE_SYSTEMD 1' "${PGEVENTD_BUILDDIR:?}/config.h" ||
	{ echo "SKIP: built without libsystemd"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }

# listen NAME: a notify socket $T/NAME.sock logging to $T/NAME.jsonl
listen_notify() {
	rm -f "$T/$1.jsonl"
	python3 "$PGEVENTD_SRCDIR/tests/notify/notify_listen.py" --socket "$T/$1.sock" \
		--log "$T/$1.jsonl" --seconds 120 &
	PIDS="$PIDS $!"
	for _ in $(seq 1 50); do [ -S "$T/$1.sock" ] && return 0; sleep 0.05; done
	die "notify listener did not start"
}
# nfields NAME: the messages as "FIELD=value|FIELD=value" lines, in order
nlines() {
	python3 - "$T/$1.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("|".join("%s=%s" % kv for kv in r["fields"].items()))
PY
}
# wait_notify NAME REGEX SECONDS: until a message matches
wait_notify() {
	local deadline=$(($(date +%s) + $3))
	while ! nlines "$1" 2>/dev/null | grep -Eq -- "$2"; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}
# gaps NAME REGEX: the largest gap in seconds between messages matching REGEX
max_gap() {
	python3 - "$T/$1.jsonl" "$2" <<'PY'
import json, re, sys
ts = [json.loads(l)["t"] for l in open(sys.argv[1])
      if re.search(sys.argv[2], json.loads(l)["raw"])]
print("%.1f" % max((b - a for a, b in zip(ts, ts[1:])), default=0))
PY
}

setup_db

# 1. Database unreachable: STATUS says so, no READY=1.
listen_notify down
conf "$T/down.conf" 'database = { conninfo = "host=127.0.0.1 port=1 connect_timeout=1"; };'
NOTIFY_SOCKET="$T/down.sock" "$BIN" -c "$T/down.conf" run >"$T/down.log" 2>&1 &
DOWN=$!
PIDS="$PIDS $DOWN"
wait_notify down '^STATUS=connecting to the database' 10 || die "no STATUS while connecting"
sleep 2
assert_eq "$(nlines down | grep -c 'READY=1')" 0 "no READY=1 while the database is unreachable"
kill -TERM $DOWN; wait $DOWN

# 2. Migrations pending: exit 75, never READY.
createdb "${PGDATABASE}_bare" || die "createdb"
listen_notify bare
conf "$T/bare.conf" "database = { conninfo = \"dbname=${PGDATABASE}_bare\"; };"
NOTIFY_SOCKET="$T/bare.sock" "$BIN" -c "$T/bare.conf" run >"$T/bare.log" 2>&1
assert_eq $? 75 "migrations pending: exit 75"
assert_eq "$(nlines bare | grep -c 'READY=1')" 0 "no READY=1 with migrations pending"
dropdb "${PGDATABASE}_bare"

# 3. The normal life: ready, watchdog, a wedged loop, reload, stop.
listen_notify a
conf "$T/a.conf" 'workers = 1;' 'stall_timeout_ms = 1500;' 'health = { listen = "127.0.0.1:0"; };'
NOTIFY_SOCKET="$T/a.sock" WATCHDOG_USEC=400000 "$BIN" -c "$T/a.conf" run >"$T/a.log" 2>&1 &
DPID=$!
PIDS="$PIDS $DPID"
wait_notify a '^READY=1\|STATUS=running with 1 workers' 10 || die "no READY=1"
PORT=$(health_port a) || die "no health port"
# READY=1 goes out right after "pgeventd started", which must come after the
# health socket was bound (and the database checked).
hl=$(grep -n 'msg="health server listening"' "$T/a.log" | cut -d: -f1)
st=$(grep -n 'msg="pgeventd started"' "$T/a.log" | cut -d: -f1)
assert_eq "$([ -n "$hl" ] && [ -n "$st" ] && [ "$hl" -lt "$st" ] && echo yes)" yes "the health socket listened before READY"
ready_at=$(python3 -c "import json,sys;print(next(json.loads(l)['t'] for l in open('$T/a.jsonl') if 'READY=1' in l))")
first_wd=$(python3 -c "import json,sys;print(next((json.loads(l)['t'] for l in open('$T/a.jsonl') if 'WATCHDOG=1' in l), 0))")
wait_notify a '^WATCHDOG=1$' 5 || die "no WATCHDOG=1"
assert_eq "$(python3 -c "print($first_wd == 0 or $first_wd >= $ready_at)")" True "no WATCHDOG=1 before READY=1"
sleep 1.5
n=$(nlines a | grep -c '^WATCHDOG=1$')
[ "$n" -ge 3 ] && log "ok: watchdog pinged $n times (every 200 ms)" || fail "watchdog pinged $n times"
assert_eq "$(http_get "$PORT" /health/live)" "live" "live while the loop turns"

# Wedge the only claim loop in a handler for 5 s (stall_timeout_ms 1.5 s):
# the pings stop, then resume once the loop turns again.
q "INSERT INTO events (event_type, payload) VALUES ('test.slow', '{\"ms\": 5000}')" >/dev/null
wait_log a 'watchdog not fed: a loop is stalled.*worker-1 stalled' 10 || die "stall not logged"
wait_log a 'claim loops turning again: watchdog fed' 15 || die "watchdog not resumed"
sleep 0.6
gap=$(max_gap a '^WATCHDOG=1$')
assert_eq "$(python3 -c "print(2.5 < $gap < 8)")" True "no WATCHDOG=1 for ${gap}s while the loop was wedged"

# SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
n_ready=$(nlines a | grep -c 'READY=1')
kill -HUP $DPID
wait_notify a '^RELOADING=1\|MONOTONIC_USEC=[0-9]+$' 5 || die "no RELOADING=1 with MONOTONIC_USEC"
wait_log a 'SIGHUP: configuration re-read' 5 || die "reload not logged"
wait_notify a "READY=1" 5 || true
for _ in $(seq 1 50); do
	[ "$(nlines a | grep -c 'READY=1')" -gt "$n_ready" ] && break
	sleep 0.1
done
order=$(nlines a | grep -oE '^(RELOADING|READY)=1' | tail -n 2 | tr '\n' ' ')
assert_eq "$order" "RELOADING=1 READY=1 " "READY=1 follows RELOADING=1"
assert_eq "$(nlines a | grep -c 'READY=1')" $((n_ready + 1)) "one READY=1 per reload"

# STATUS= carries a summary of the work done.
q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}')" >/dev/null
wait_notify a '^STATUS=1/1 workers connected; [0-9]+ events handled' 10 || fail "no summary STATUS="

# SIGTERM: STOPPING=1, exit 0, and no WATCHDOG=1 after it.
stop_daemon $DPID; assert_eq $? 0 "exit 0"
wait_notify a '^STOPPING=1' 2 || fail "no STOPPING=1"
assert_eq "$(nlines a | sed -n '/^STOPPING=1/,$p' | grep -c '^WATCHDOG=1$')" 0 "no WATCHDOG=1 after STOPPING=1"
finish
