#!/usr/bin/env bash
# Delivery policy: 500,500,200 -> delivered on attempt 3 after the backoff
# gaps; 429 with Retry-After honoured; 400 -> failed, no retry; 410 ->
# failed and the subscription disabled; 302 -> failed, not followed; a sink
# that never answers -> timeout, retried, then dead.
. "$(dirname "$0")/lib.sh"
setup_db
start_sink '{
 "flaky": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["500", "500", "200"]},
 "limited": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["429:2", "200"]},
 "bad": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["400"]},
 "gone": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["410"]},
 "moved": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "script": ["302"]},
 "slowpoke": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "then": "hang"}}'
for k in flaky limited bad gone moved slowpoke; do add_sub "$k" "$k" "[\"t.$k\"]"; done
q "UPDATE subscriptions SET timeout_ms = 500, max_attempts = 2 WHERE name = 'slowpoke'"
conf "$T/a.conf" 'relay = { event_types = ["t.*"]; backoff = { schedule_ms = [250, 2000]; jitter = 0.2; }; };' \
	'health = { listen = "127.0.0.1:0"; };'
start_daemon a "$T/a.conf"
for k in flaky limited bad gone moved slowpoke; do insert_events "t.$k" 1 "'{}'"; done
st() { q "SELECT d.status || '|' || d.attempt FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = '$1'"; }
wait_for "SELECT count(*) FROM deliveries WHERE status IN ('delivered', 'failed', 'dead')" 6 30 || fail "not all finished"

assert_eq "$(st flaky)" "delivered|3" "500, 500, 200: delivered on attempt 3"
ts() { python3 -c "
import json
print(' '.join('%.3f' % r['t'] for r in map(json.loads, open('$T/sink.jsonl')) if r['key'] == '$1'))"; }
read -r f1 f2 f3 <<<"$(ts flaky)"
g1=$(awk -v a="$f1" -v b="$f2" 'BEGIN { printf "%d", (b - a) * 1000 }')
g2=$(awk -v a="$f2" -v b="$f3" 'BEGIN { printf "%d", (b - a) * 1000 }')
log "flaky gaps: $g1 ms, $g2 ms (schedule 250 then 2000 ms, +-20 %)"
[ "$g1" -ge 200 ] && [ "$g1" -le 650 ] && log "ok: first gap" || fail "first gap $g1 ms"
[ "$g2" -ge 1600 ] && [ "$g2" -le 2700 ] && log "ok: second gap follows the schedule" || fail "second gap $g2 ms"

assert_eq "$(st limited)" "delivered|2" "429 then 200: delivered on attempt 2"
read -r l1 l2 <<<"$(ts limited)"
gl=$(awk -v a="$l1" -v b="$l2" 'BEGIN { printf "%d", (b - a) * 1000 }')
log "429 gap: $gl ms (Retry-After: 2)"
[ "$gl" -ge 1900 ] && [ "$gl" -le 3000 ] && log "ok: Retry-After honoured" || fail "Retry-After gap $gl ms"

assert_eq "$(st bad)" "failed|1" "400: failed on attempt 1"
assert_eq "$(st moved)" "failed|1" "302: failed on attempt 1"
assert_eq "$(sink_count 'r["key"] in ("bad", "moved")')" 2 "no retry of 400 or 302, redirect not followed"
assert_eq "$(st gone)" "failed|1" "410: failed"
assert_eq "$(q "SELECT enabled || '|' || disabled_reason FROM subscriptions WHERE name = 'gone'")" "false|endpoint answered 410 Gone" "410 disables the subscription"
assert_eq "$(st slowpoke)" "dead|2" "never answers: retried, then dead"
assert_match "$(q "SELECT last_error FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'slowpoke'")" '^gave up after 2 attempts: .*timed out' "dead with the timeout error"
assert_eq "$(q "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'slowpoke' AND a.http_status IS NULL AND a.error ~* 'timed out'")" 2 "both timeouts logged in delivery_attempts"
assert_match "$(grep 'subscription=slowpoke attempt=1 ' "$T/a.log")" 'outcome=retry retry_in_ms=[0-9]+ ' "the log: the first timeout is a retry"
assert_match "$(grep 'subscription=slowpoke attempt=2 ' "$T/a.log")" 'level=warning .*outcome=dead error=' "the log: the last is dead, with no retry_in_ms"
assert_match "$(q "SELECT response_body FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN subscriptions s ON s.id = d.subscription_id WHERE s.name = 'bad'")" '^400' "response body kept"
sleep 1.5
assert_eq "$(sink_count 'r["key"] in ("bad", "moved", "gone")')" 3 "still no retries later"
assert_match "$(http_get "$(health_port a)" /metrics)" \
	'pgeventd_deliveries_total\{subscription="slowpoke",outcome="dead"\} 1' "the metric counts the last attempt as dead"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
