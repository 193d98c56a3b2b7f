#!/usr/bin/env bash
# A client that connects and sends nothing, and one that sends 1 MiB of
# header: the server answers others meanwhile, the workers keep processing,
# and the hostile clients get 408 and 431.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'health = { listen = "127.0.0.1:0"; };'
start_daemon a "$T/a.conf"
PORT=$(health_port a) || die "health server did not start"

exec 3<>"/dev/tcp/127.0.0.1/$PORT" || die "cannot connect"
{
	printf 'GET /health HTTP/1.1\r\nHost: x\r\nX-Big: '
	head -c 1048576 /dev/zero | tr '\0' 'a'
	printf '\r\n\r\n'
} >"$T/big.req"
exec 4<>"/dev/tcp/127.0.0.1/$PORT" || die "cannot connect"
(cat "$T/big.req" >&4 2>/dev/null) &

insert_events test.effect 300 "'{}'"
ok=0
for i in $(seq 1 10); do
	L=$(http_get "$PORT" /health/live --max-time 1)
	[ "$(http_status) $L" = "200 live" ] && ok=$((ok + 1))
	sleep 0.1
done
assert_eq "$ok" 10 "others are answered while the hostile clients hang"
wait_for "SELECT count(*) FROM test_effects" 300 20 || fail "workers stalled"
log "ok: workers kept processing"

silent=$(timeout 5 cat <&3)
assert_match "$silent" '^HTTP/1.1 408' "the silent client gets 408 after the read timeout"
exec 3<&-
big=$(timeout 5 cat <&4 2>/dev/null)
rc=$?
exec 4<&-
# The server answers 431 after 8 KiB and closes; the client may see the
# answer or, when the close hits it mid-send, a reset. Either way the
# connection ends well before the 5 s timeout (rc 124 would mean a hang).
assert_match "$rc" '^[0-9]+$' "read ended"
[ "$rc" != 124 ] && log "ok: the 1 MiB head is refused, the connection closed" || fail "the 1 MiB client was kept"
[ -z "$big" ] || assert_match "$big" '^HTTP/1.1 431' "answered 431"
L=$(http_get "$PORT" /health/live)
assert_eq "$(http_status) $L" "200 live" "the server still answers afterwards"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
