#!/usr/bin/env bash
# A NATS subscription whose server accepts connections and never speaks (a
# hung or black-holed broker) holds no one else up: libnats's connect waits
# relay.connect_timeout_ms for the server's INFO, and it now waits on a
# thread of its own. A webhook subscription beside it gets events paced
# every 75 ms within 1 s each (p99), while the NATS deliveries fail with
# the reason and are retried; the daemon stops at once in the middle of a
# connect. Then a slow server (a proxy that holds each connection 1.5 s in
# front of the test's nats-server): the sends wait for the connect and go.
. "$(dirname "$0")/lib.sh"
setup_db
W='"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]'
start_sink "{\"h\": {$W}}"
add_sub healthy h '["job.h"]'

# The silent server: accepts, reads, never writes; counts connections.
cat >"$T/silent.py" <<'PY'
import os, socket, sys, threading
portfile, countfile = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(portfile + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
held, n = [], 0
while True:
    c, _ = s.accept()
    held.append(c)  # never answered, never closed
    n += 1
    open(countfile, "w").write(str(n))
PY
python3 "$T/silent.py" "$T/silent.port" "$T/silent.count" &
PIDS="$PIDS $!"
for _ in $(seq 1 100); do [ -s "$T/silent.port" ] && break; sleep 0.05; done
SILENT=$(cat "$T/silent.port") || die "no silent server"
out=$("$BIN" -c "$T/migrate.conf" subscriptions add --name broker --events 'job.n' \
	--url "nats://127.0.0.1:$SILENT/jobs.{event_type}" --timeout-ms 2000 2>&1)
assert_eq "$?" 0 "subscriptions add a NATS subscription: $out"
q "UPDATE subscriptions SET max_attempts = 100 WHERE name = 'broker'" >/dev/null

# connect_timeout_ms = 5000 is the default: each connect to the silent
# server takes 5 s; before, the relay's loop sat in it.
conf "$T/a.conf" 'shutdown_timeout_ms = 500;' \
	'relay = { event_types = ["job.*"]; breaker = { failures = 0; }; backoff = { schedule_ms = [500]; jitter = 0.0; }; };'
start_daemon a "$T/a.conf"
wait_log a 'relay started' 10 || die "relay did not start"
insert_events job.n 20 "'{}'"
for _ in $(seq 1 50); do [ -s "$T/silent.count" ] && break; sleep 0.1; done
assert_eq "$(cat "$T/silent.count" 2>/dev/null)" 1 "the relay is connecting to the silent server"

# Paced healthy events while connects to the silent server come and go.
{
	for i in $(seq 1 160); do
		echo "INSERT INTO events (event_type, payload) VALUES ('job.h', '{\"paced\": $i}');"
		echo "SELECT pg_sleep(0.075);"
	done
} | psql -X -q -o /dev/null
wait_sink 'r["key"] == "h" and r["body_ok"]' 160 30 || die "paced events not delivered"
read -r p99 n <<<"$(paced_p99)"
log "paced webhook deliveries beside a silent NATS server: p99 $p99 s over $n events"
assert_eq "$n" 160 "every paced event arrived"
assert_eq "$(python3 -c "print($p99 <= 1.0)")" True "p99 from event to webhook delivery <= 1 s ($p99 s)"

# The NATS deliveries: retried with the reason, none delivered.
wait_for "SELECT count(*) > 0 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
   JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'broker'" t 20 ||
	fail "no attempt of the NATS subscription"
err=$(q "SELECT a.error FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
   JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'broker' ORDER BY a.id DESC LIMIT 1")
assert_match "$err" "(not connected to nats://127\.0\.0\.1:$SILENT within 2000 ms \(still connecting\)|cannot connect to nats://127\.0\.0\.1:$SILENT: )" \
	"a NATS delivery fails with why: $err"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
   WHERE s.name = 'broker' AND d.status IN ('delivered', 'dead', 'failed')")" 0 \
	"the NATS deliveries are retried, none given up"
conns=$(cat "$T/silent.count")
assert_eq "$([ "$conns" -le 6 ] && echo bounded)" bounded \
	"one connect at a time, each taking its 5 s, then a second's pause ($conns connections in ~12 s)"

# Stop in the middle of a connect: no wait for it.
t0=$(date +%s%N)
stop_daemon "$DPID"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$rc" 0 "exit 0"
assert_eq "$([ "$ms" -lt 3000 ] && echo prompt)" prompt "stopped in $ms ms, not after the connect's 5 s"

# ---- A slow server: sends wait for the connect, then go --------------------
# A proxy in front of the test's nats-server that holds each new connection
# 1.5 s before it forwards a byte. With a 5 s timeout the deliveries wait
# for the connect (on its thread) and are published once it is up: each
# attempt took the wait, and the stream holds each message once.
if [ -z "${PGEVENTD_TEST_NATS:-}" ]; then
	log "no test nats-server (run scripts/test): the slow-server part is skipped"
	finish
fi
NS=${PGEVENTD_BUILDDIR:?}/tests/nats_stream
cat >"$T/slow.py" <<'PY'
import os, socket, sys, threading, time
portfile, up_port = sys.argv[1], int(sys.argv[2])
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    time.sleep(1.5)
    u = socket.create_connection(("127.0.0.1", up_port))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    pump(u, c)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
open(portfile + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$T/slow.py" "$T/slow.port" "${PGEVENTD_TEST_NATS##*:}" &
PIDS="$PIDS $!"
for _ in $(seq 1 100); do [ -s "$T/slow.port" ] && break; sleep 0.05; done
SLOW=$(cat "$T/slow.port") || die "no proxy"
# the server lives through both test phases of scripts/test: names of this run
STREAM=T87_$$
SUBJ=t87.$$
"$NS" "$PGEVENTD_TEST_NATS" create "$STREAM" "$SUBJ.>" || die "create stream"
out=$("$BIN" -c "$T/migrate.conf" subscriptions add --name slow --events 'job.s' \
	--url "nats://127.0.0.1:$SLOW/$SUBJ.{event_type}" --timeout-ms 5000 2>&1)
assert_eq "$?" 0 "subscriptions add a NATS subscription behind the slow proxy: $out"
start_daemon b "$T/a.conf"
insert_events job.s 10 "'{}'"
wait_for "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
   WHERE s.name = 'slow' AND d.status = 'delivered'" 10 30 || fail "the slow server's deliveries did not go"
assert_eq "$(q "SELECT count(*), min(a.duration_ms) >= 1400 FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
   JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'slow'")" "10|t" \
	"each delivered at its first attempt, which waited for the connect (>= 1.4 s)"
assert_eq "$("$NS" "$PGEVENTD_TEST_NATS" wait "$STREAM" 10 10)" 10 "the stream holds the 10 messages"
stop_daemon "$DPID"; assert_eq $? 0 "exit 0"
finish
