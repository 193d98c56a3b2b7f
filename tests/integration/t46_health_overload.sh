#!/usr/bin/env bash
# Overload of the health server never reads as "not live": a client holds 40
# idle connections (more than the 32 the server keeps), reopening each one
# as the server closes it, and every /health/live and /metrics probe is
# still answered 200, promptly.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
setup_db
conf "$T/a.conf" 'health = { listen = "127.0.0.1:0"; };'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "health server did not start"
for _ in $(seq 1 50); do [ "$(http_get "$PORT" /health/live)" = live ] && break; sleep 0.1; done

# The holder: N idle connections, each reopened as soon as it ends; it
# prints how many it opened in all when it stops.
python3 - "$PORT" 40 60 >"$T/holder.out" 2>&1 <<'PY' &
import selectors, socket, sys, time
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
opened = 0
def dial():
    global opened
    s = socket.create_connection(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_READ)
    opened += 1
for _ in range(n):
    dial()
open("/dev/stderr", "w").write("holding\n")
end = time.time() + seconds
while time.time() < end:
    for key, _ in sel.select(0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            dial()
print(opened, flush=True)
PY
HOLDER=$!
PIDS="$PIDS $HOLDER"
for _ in $(seq 1 50); do grep -q holding "$T/holder.out" && break; sleep 0.1; done
grep -q holding "$T/holder.out" || die "the holder did not start"
sleep 2.5 # past the 2 s read timeout: the server has closed and they reopened

ok=0 mok=0 t0=$(date +%s%N)
for i in $(seq 1 20); do
	L=$(http_get "$PORT" /health/live --max-time 3)
	[ "$(http_status) $L" = "200 live" ] && ok=$((ok + 1)) || log "probe $i: $(http_status) $L"
	http_get "$PORT" /metrics --max-time 3 | grep -q '^pgeventd_' && [ "$(http_status)" = 200 ] &&
		mok=$((mok + 1))
	sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$ok" 20 "20 of 20 /health/live probes answered 200 under the idle flood"
assert_eq "$mok" 20 "20 of 20 /metrics scrapes answered"
[ "$ms" -lt 30000 ] && log "ok: 40 requests in ${ms} ms" || fail "40 requests took ${ms} ms"
kill -0 $HOLDER 2>/dev/null || die "the holder stopped early: $(cat "$T/holder.out")"
kill $HOLDER 2>/dev/null
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
