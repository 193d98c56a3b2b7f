# lib.sh -- helpers for the integration tests (sourced).
#
# Each test gets its own database in the throwaway cluster started by
# scripts/test (PGHOST/PGPORT exported, PGEVENTD_TEST_PG=1), its own
# config files and log files under $T, and kills its daemons on exit.
# Without a cluster the test exits 77 (skipped), e.g. under make distcheck.
#
# Every `log "ok: ..."` is a passed assertion and every `fail` (also through
# die) a failed one; on exit the test prints the counts (cleanup, the EXIT trap),
#   # assertions: P passed, F failed
# which scripts/test sums from the test's .log.

set -u
if [ -z "${PGEVENTD_TEST_PG:-}" ]; then
	echo "SKIP: no test PostgreSQL (run scripts/test)"
	exit 77
fi

BIN=${PGEVENTD_BIN:?}
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "/tmp/pgeventd-$TEST_NAME.XXXXXX")
export PGDATABASE="t_${TEST_NAME}_$$"
PIDS=""
FAILS=0
OKS=0
ulimit -c 0 2>/dev/null || true

cleanup() {
	local p
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	dropdb --if-exists -f "$PGDATABASE" >/dev/null 2>&1
	if [ "$FAILS" = 0 ]; then rm -rf "$T"; else echo "artifacts kept in $T"; fi
	printf '# assertions: %d passed, %d failed\n' "$OKS" "$FAILS"
}
trap cleanup EXIT

log() {
	case "$*" in ok:*) OKS=$((OKS + 1)) ;; esac
	printf '# %s\n' "$*"
}

fail() {
	printf 'FAIL: %s\n' "$*"
	FAILS=$((FAILS + 1))
}

# Show the daemon logs and stop the test now.
die() {
	fail "$*"
	for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 30 "$f"; }; done
	exit 1
}

assert_eq() { # actual expected message
	if [ "$1" = "$2" ]; then log "ok: $3"; else fail "$3: got '$1', want '$2'"; fi
}

assert_match() { # text regex message
	if printf '%s' "$1" | grep -Eq -- "$2"; then log "ok: $3"; else fail "$3: '$1' does not match /$2/"; fi
}

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

# Wait until `q SQL` prints EXPECTED, polling every 100 ms for SECONDS.
wait_for() { # sql expected seconds
	local deadline=$(($(date +%s) + $3)) got
	while :; do
		got=$(q "$1" 2>/dev/null)
		[ "$got" = "$2" ] && return 0
		[ "$(date +%s)" -ge "$deadline" ] && { echo "waited $3 s for [$1] = $2, last: $got"; return 1; }
		sleep 0.1
	done
}

# Write a config file: the caller's lines, then test defaults for the keys
# the caller did not set (the test pack on, fast polling, no health server,
# log level $LOG_LEVEL or info).
conf() { # file [lines...]
	local f=$1 d k
	shift
	{
		for l in "$@"; do echo "$l"; done
		for d in 'packs = ["test"];' 'poll_interval_ms = 100;' 'health = { listen = ""; };' \
			"log = { level = \"${LOG_LEVEL:-info}\"; };"; do
			k=${d%% *}
			printf '%s\n' "$@" | grep -q "^$k[ =]" || echo "$d"
		done
	} >"$f"
}

# A fresh database with every migration applied.
setup_db() {
	createdb "$PGDATABASE" || die "createdb"
	conf "$T/migrate.conf"
	"$BIN" -c "$T/migrate.conf" migrate >"$T/migrate.out" 2>&1 || { cat "$T/migrate.out"; die "migrate"; }
}

# Start a daemon in the background: start_daemon NAME CONF [run args]; sets $DPID.
start_daemon() {
	local name=$1 cf=$2
	shift 2
	"$BIN" -c "$cf" run "$@" >"$T/$name.log" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
}

# Wait until a daemon's log has N lines matching REGEX (default 1).
wait_log() { # name regex seconds [n]
	local deadline=$(($(date +%s) + $3)) n=${4:-1}
	while [ "$(grep -Ec -- "$2" "$T/$1.log" 2>/dev/null)" -lt "$n" ]; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# Stop a daemon with SIGTERM and return its exit status.
stop_daemon() { # pid
	kill -TERM "$1" 2>/dev/null
	wait "$1"
}

# Insert N events of TYPE with PAYLOAD (a SQL jsonb expression).
insert_events() { # type n payload
	q "INSERT INTO events (event_type, payload) SELECT '$1', $3 FROM generate_series(1, $2)"
}

finish() {
	if [ "$FAILS" -gt 0 ]; then
		echo "$TEST_NAME: $FAILS assertion(s) failed"
		for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 20 "$f"; }; done
		exit 1
	fi
	echo "$TEST_NAME: all assertions passed"
	exit 0
}

# ---- the health server ---------------------------------------------------
# Tests configure health.listen = "127.0.0.1:0" and read the bound port
# from the daemon's log.
health_port() { # daemon-name
	wait_log "$1" 'msg="health server listening"' 10 || return 1
	grep 'msg="health server listening"' "$T/$1.log" | tail -n 1 | sed -n 's/.* port=\([0-9]*\).*/\1/p'
}

# GET a path: prints the body; the status code goes to $T/status.
http_get() { # port path [curl args...]
	local port=$1 path=$2
	shift 2
	curl -s --max-time 5 -o "$T/body" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" >"$T/status"
	cat "$T/body"
}
http_status() { cat "$T/status"; }

# A field of a JSON document, read by PostgreSQL: jget JSON 'stats,processed'
jget() {
	q "SELECT \$json\$$1\$json\$::jsonb #>> '{$2}'"
}

# ---- the webhook sink (tests/sink/webhook_sink.py) -----------------------
# start_sink writes $T/sink.json (the caller's JSON config) and starts the
# sink; sets SINK_PORT and SINK_PID. Its log is $T/sink.jsonl.
start_sink() { # config-json
	command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
	printf '%s\n' "$1" >"$T/sink.json"
	rm -f "$T/sink.port"
	python3 "$PGEVENTD_SRCDIR/tests/sink/webhook_sink.py" --config "$T/sink.json" \
		--log "$T/sink.jsonl" --port "${2:-0}" --port-file "$T/sink.port" 2>"$T/sink.err" &
	SINK_PID=$!
	PIDS="$PIDS $SINK_PID"
	for _ in $(seq 1 100); do
		[ -s "$T/sink.port" ] && break
		sleep 0.05
	done
	SINK_PORT=$(cat "$T/sink.port" 2>/dev/null)
	[ -n "$SINK_PORT" ] || die "sink did not start: $(cat "$T/sink.err")"
}

# Count sink log lines matching a jq-like condition written in Python:
# sink_count 'r["key"] == "a" and r["sig_ok"]'
sink_count() {
	python3 - "$T/sink.jsonl" "$1" <<'PY'
import json, sys
n = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if eval(sys.argv[2], {}, {"r": r}):
            n += 1
except FileNotFoundError:
    pass
print(n)
PY
}

# Wait until sink_count COND prints N.
wait_sink() { # cond n seconds
	local deadline=$(($(date +%s) + $3))
	while [ "$(sink_count "$1")" != "$2" ]; do
		[ "$(date +%s)" -ge "$deadline" ] && { echo "waited $3 s for sink [$1] = $2, got $(sink_count "$1")"; return 1; }
		sleep 0.1
	done
}

# What one claim of 64 by the relay's own statement (src/delivery.c's
# claim_sql, rolled back: it changes nothing) reads of deliveries: prints
# "buffers rows-removed-by-filters seq-scans rows-claimed".
claim_cost() {
	if [ ! -s "$T/claim.sql" ]; then
		python3 - "$PGEVENTD_SRCDIR/src/delivery.c" >"$T/claim.sql" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
body = src[src.index("claim_sql[] ="):]
body = body[:body.index(";\n")]
print("".join(bytes(s, "utf-8").decode("unicode_escape") for s in re.findall(r'"((?:[^"\\]|\\.)*)"', body)))
PY
		[ -s "$T/claim.sql" ] || die "cannot read the claim statement from src/delivery.c"
	fi
	{
		echo "PREPARE claim(int, int) AS $(cat "$T/claim.sql");"
		echo "BEGIN;"
		echo "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim(64, 1000);"
		echo "ROLLBACK;"
	} | psql -X -q -A -t -v ON_ERROR_STOP=1 >"$T/plan.json" || die "EXPLAIN of the claim failed"
	python3 - "$T/plan.json" <<'PY'
import json, sys
plan = json.loads(open(sys.argv[1]).read())[0]["Plan"]
buffers, removed, seqscans = 0, 0, 0
def walk(n):
    global buffers, removed, seqscans
    if n.get("Relation Name") == "deliveries" and n["Node Type"] != "ModifyTable":
        buffers += n.get("Shared Hit Blocks", 0) + n.get("Shared Read Blocks", 0)
        removed += n.get("Rows Removed by Filter", 0) + n.get("Rows Removed by Index Recheck", 0)
        seqscans += n["Node Type"] == "Seq Scan"
    removed += n.get("Rows Removed by Join Filter", 0)
    for c in n.get("Plans", []):
        walk(c)
walk(plan)
print(buffers, removed, seqscans, plan.get("Actual Rows", 0))
PY
}

# Seconds from event to arrival at the sink (key h) of the events whose
# payload has "paced", after the sink log's first N lines: prints "p99 count".
paced_p99() { # [sink-lines-to-skip]
	python3 - "$T/sink.jsonl" "${1:-0}" <<'PY'
import json, subprocess, sys
rs = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
arrived = {r["event_id"]: r["t"] for r in rs if r["key"] == "h"}
out = subprocess.run(["psql", "-X", "-A", "-t", "-c",
    "SELECT id, extract(epoch FROM created_at) FROM events WHERE payload ? 'paced'"],
    capture_output=True, text=True, check=True).stdout
lat = sorted(arrived[i] - float(c) for i, c in (l.split("|") for l in out.split()) if i in arrived)
print("%.3f %d" % (lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)))
PY
}

# A subscription by SQL: add_sub NAME KEY EVENT_TYPES_JSON [SCHEME] [extra col=val SQL]
add_sub() {
	q "INSERT INTO subscriptions (name, url, secret, event_types, signature_scheme)
	   VALUES ('$1', 'http://127.0.0.1:$SINK_PORT/$2', '${SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}',
	           '$3', '${4:-standard}')" >/dev/null
}
