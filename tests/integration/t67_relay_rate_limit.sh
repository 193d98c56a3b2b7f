#!/usr/bin/env bash
# A per-subscription rate limit, set with `pgeventd subscriptions update
# NAME --rate-limit N`, honoured at the receiver across two instances:
# within any window of T seconds at most N x (T + 1) requests (a token
# bucket holding one second's worth), and the limit is used (the run is
# not much slower than the limit allows). A subscription without a limit
# beside it is not slowed.
. "$(dirname "$0")/lib.sh"
setup_db
W='"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]'
start_sink "{\"r\": {$W}, \"f\": {$W}}"
add_sub limited r '["job.r"]'
add_sub free f '["job.f"]'
conf "$T/a.conf" 'relay = { event_types = ["job.*"]; };'
"$BIN" -c "$T/a.conf" subscriptions update limited --rate-limit 20 >"$T/update.out" 2>&1 ||
	die "subscriptions update: $(cat "$T/update.out")"
assert_eq "$(q "SELECT rate_limit FROM subscriptions WHERE name = 'limited'")" 20 "--rate-limit 20 is stored"
assert_match "$("$BIN" -c "$T/a.conf" subscriptions list)" 'limited .* 16 +20 ' "list shows the cap and the limit"
"$BIN" -c "$T/a.conf" subscriptions update limited --rate-limit 0 >/dev/null 2>&1
assert_eq "$?" 64 "--rate-limit 0 is a usage error"

start_daemon a "$T/a.conf"
A=$DPID
start_daemon b "$T/a.conf"
wait_log a 'relay started' 10 && wait_log b 'relay started' 10 || die "relays did not start"

insert_events job.r 120 "'{}'"
insert_events job.f 120 "'{}'"
wait_sink 'r["key"] == "f"' 120 20 || die "the unlimited subscription's deliveries did not arrive"
wait_sink 'r["key"] == "r"' 120 30 || die "the limited subscription's deliveries did not arrive"
out=$(python3 - "$T/sink.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
def times(k):
    return sorted(r["t"] for r in rs if r["key"] == k)
r, f = times("r"), times("f")
worst = {}
for T in (0.5, 1, 2, 4):
    worst[T] = max(sum(1 for u in r if t <= u < t + T) for t in r)
print("%.2f %.2f %s" % (r[-1] - r[0], f[-1] - f[0],
                         " ".join("%g:%d" % (T, n) for T, n in worst.items())))
PY
)
read -r span fspan worst <<<"$out"
log "120 requests at 20/s took $span s (the unlimited subscription's 120: $fspan s); most in a window of T s: $worst"
for tw in $worst; do
	win=${tw%%:*} n=${tw#*:}
	assert_eq "$(python3 -c "print($n <= 20 * ($win + 1))")" True "at most 20 x ($win + 1) requests in any $win s ($n)"
done
# 120 requests, 20 at once, then 20/s: 5 s; allow for the relays' polls.
assert_eq "$(python3 -c "print(4.5 <= $span <= 9)")" True "the run takes about what 20/s allows ($span s, 5 s expected)"
assert_eq "$(python3 -c "print($fspan < 3)")" True "the unlimited subscription is not slowed ($fspan s)"
# Which instance sent what (both usually take part; the limit holds either way).
na=$(grep -c 'subscription=limited' "$T/a.log")
nb=$(grep -c 'subscription=limited' "$T/b.log")
log "deliveries of the limited subscription: $na by one instance, $nb by the other"

# --rate-limit none lifts it.
"$BIN" -c "$T/a.conf" subscriptions update limited --rate-limit none >/dev/null || die "update none"
assert_eq "$(q "SELECT rate_limit IS NULL FROM subscriptions WHERE name = 'limited'")" t "--rate-limit none lifts the limit"
finish
