#!/usr/bin/env bash
# The claim costs only what is due for enabled, unpaused subscriptions:
# 100,000 pending deliveries of a paused subscription and 100,000 of a
# disabled one do not slow it (EXPLAIN (ANALYZE, BUFFERS) of the relay's
# own claim statement, read from src/delivery.c), the relay keeps
# delivering beside them, and a re-enabled subscription's deliveries flow
# again at once.
. "$(dirname "$0")/lib.sh"
setup_db
W='"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]'
start_sink "{\"h\": {$W}, \"p\": {$W}, \"d\": {$W}}"
add_sub healthy h '["job.h"]'
add_sub paused p '["job.x"]'
add_sub disabled d '["job.x"]'
q "UPDATE subscriptions SET paused_until = now() + interval '1 day' WHERE name = 'paused'"
q "UPDATE subscriptions SET enabled = false WHERE name = 'disabled'"

# claim_cost (lib.sh): what the relay's own claim reads of deliveries.

# 100 due deliveries of the healthy subscription, by SQL (no relay yet).
q "INSERT INTO deliveries (event_id, subscription_id, event_type, body)
   SELECT gen_random_uuid(), id, 'job.h', '{}' FROM subscriptions, generate_series(1, 100)
    WHERE name = 'healthy'"
q "VACUUM ANALYZE deliveries"
read -r buf0 rem0 seq0 got0 <<<"$(claim_cost)"
log "claim with nothing stranded: $got0 claimed, $buf0 buffers of deliveries read, $rem0 rows removed by filters"

# 200,000 stranded: due long ago, so first in any order by due time.
q "INSERT INTO deliveries (event_id, subscription_id, event_type, body, next_attempt_at)
   SELECT gen_random_uuid(), s.id, 'job.x', '{}', now() - interval '1 hour'
     FROM subscriptions s, generate_series(1, 100000) WHERE s.name IN ('paused', 'disabled')"
q "VACUUM ANALYZE deliveries"
read -r buf1 rem1 seq1 got1 <<<"$(claim_cost)"
log "claim beside 200,000 stranded: $got1 claimed, $buf1 buffers of deliveries read, $rem1 rows removed by filters"
assert_eq "$got1" 16 "the claim takes the healthy subscription's 16 (its max_in_flight)"
assert_eq "$rem1" 0 "the claim removes no delivery by a filter (it never reads the stranded ones)"
assert_eq "$([ "$buf1" -le 200 ] && echo bounded)" bounded \
	"the claim reads at most 200 buffers of deliveries ($buf1; $buf0 without the stranded rows)"
assert_eq "$seq1" 0 "no sequential scan of deliveries"

# The relay delivers beside them; poll_interval_ms is long, so what follows
# a re-enable is the NOTIFY's doing, not a poll's.
conf "$T/a.conf" 'poll_interval_ms = 10000;' 'shutdown_timeout_ms = 500;' 'relay = { event_types = ["job.*"]; };'
start_daemon a "$T/a.conf"
wait_sink 'r["key"] == "h"' 100 30 || die "the healthy deliveries did not arrive"
log "ok: 100 healthy deliveries arrived beside 200,000 stranded"
OKS=$((OKS + 1))
sleep 1
assert_eq "$(sink_count 'r["key"] in ("p", "d")')" 0 "nothing sent for the paused or disabled subscription"

q "DELETE FROM deliveries WHERE subscription_id = (SELECT id FROM subscriptions WHERE name = 'disabled')
   AND ctid NOT IN (SELECT ctid FROM deliveries d WHERE d.subscription_id =
                    (SELECT id FROM subscriptions WHERE name = 'disabled') LIMIT 50)"
t0=$(date +%s.%N)
"$BIN" -c "$T/a.conf" subscriptions enable disabled >/dev/null || die "subscriptions enable"
wait_sink 'r["key"] == "d"' 50 5 || die "the re-enabled subscription's deliveries did not flow"
t1=$(date +%s.%N)
log "re-enabled: its 50 waiting deliveries arrived in $(python3 -c "print('%.2f' % ($t1 - $t0))") s"
assert_eq "$(python3 -c "print($t1 - $t0 < 3)")" True "a re-enabled subscription's deliveries flow at once (< 3 s, poll 10 s)"
finish
