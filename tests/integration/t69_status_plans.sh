#!/usr/bin/env bash
# Every figure the health sampler and `pgeventd status` read uses an index:
# the EXPLAIN of each statement of src/figures.c -- the very strings the
# binary runs, printed by tests/figures_sql -- has no Seq Scan on events,
# event_dead_letters, deliveries or delivery_attempts, on tables big enough
# that the planner does read them whole once their indexes are gone (shown
# in a rolled-back transaction). Then status and the sampler's figures
# tell the right numbers, the total of delivered deliveries past 100,000
# as an estimate that says so.
. "$(dirname "$0")/lib.sh"
FIG=${PGEVENTD_BUILDDIR:?}/tests/figures_sql
[ -x "$FIG" ] || die "tests/figures_sql not built"
setup_db

# A month of history: 200,000 processed events and 2,000 unprocessed (half
# due, half scheduled for tomorrow), 60,000 dead letters of six types,
# 200,000 deliveries (170,000 delivered, 1,700 of them in the last half
# hour, 10,000 failed, 15,000 dead, 4,900 pending, 100 in flight) with one
# attempt log each.
psql -X -q -v ON_ERROR_STOP=1 <<'SQL' || die "loading the tables"
INSERT INTO subscriptions (name, url, secret) VALUES ('s', 'http://127.0.0.1:1/', 'x');
INSERT INTO events (event_type, payload, processed, processed_at, created_at)
  SELECT 'test.effect', '{"n":1}', true, now() - random() * interval '30 days',
         now() - interval '31 days' FROM generate_series(1, 200000);
INSERT INTO events (event_type, payload, created_at, next_attempt_at, attempts)
  SELECT 'test.effect', '{}', now() - interval '1 minute',
         CASE WHEN g % 2 = 0 THEN now() + interval '1 day' END, g % 3
    FROM generate_series(1, 2000) g;
INSERT INTO event_dead_letters (event_id, event_type, payload, error_message, retry_count,
                                original_created_at, created_at)
  SELECT gen_random_uuid(), 'type.' || (g % 6), '{}', 'boom', 5, now() - interval '2 days',
         now() - random() * interval '20 days' FROM generate_series(1, 60000) g;
INSERT INTO deliveries (event_id, subscription_id, event_type, body, status, attempt, finished_at,
                        locked_until, lease)
  SELECT gen_random_uuid(), (SELECT id FROM subscriptions), 'test.effect', '{"n":1}', s, 1,
         CASE WHEN s NOT IN ('delivered', 'failed', 'dead') THEN NULL
              WHEN g % 100 = 0 THEN now() - random() * interval '30 minutes'
              ELSE now() - interval '2 hours' - random() * interval '30 days' END,
         CASE WHEN s = 'in_flight' THEN now() + interval '1 minute' END,
         CASE WHEN s = 'in_flight' THEN g END
    FROM (SELECT g, CASE WHEN g <= 170000 THEN 'delivered' WHEN g <= 180000 THEN 'failed'
                         WHEN g <= 195000 THEN 'dead' WHEN g <= 199900 THEN 'pending'
                         ELSE 'in_flight' END AS s
            FROM generate_series(1, 200000) g) x;
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, applied)
  SELECT id, 1, coalesce(finished_at, now()), 1, 200, true FROM deliveries;
VACUUM ANALYZE;
SQL

tables='events|event_dead_letters|deliveries|delivery_attempts'
seq_scans() { grep -Eo "Seq Scan on ($tables)( |$)" | sort | uniq -c | tr -s ' ' | paste -sd, -; }
# The indexes of the four tables that are not constraints, dropped in a
# transaction the caller rolls back.
drop_indexes="DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid IN ('events'::regclass, 'event_dead_letters'::regclass,
                                 'deliveries'::regclass, 'delivery_attempts'::regclass)
              AND NOT i.indisunique LOOP
    EXECUTE format('DROP INDEX %I', r.relname);
  END LOOP; END \$\$;"

"$FIG" >"$T/figures" || die "figures_sql failed"
n=0
while IFS=$'\t' read -r name sql; do
	n=$((n + 1))
	printf '%s\n' "$sql" >"$T/$name.sql"
	psql -X -A -t -v ON_ERROR_STOP=1 -c "EXPLAIN $sql" >"$T/$name.plan" 2>&1 || fail "$name: EXPLAIN failed: $(cat "$T/$name.plan")"
	assert_eq "$(seq_scans <"$T/$name.plan")" "" "$name: no Seq Scan on $tables"
	grep -Eq " on ($tables)( |$)" "$T/$name.plan" || continue
	# The same statement without the indexes: the tables are big enough
	# that the planner then reads them whole.
	psql -X -A -t -v ON_ERROR_STOP=1 >"$T/$name.noidx" 2>&1 <<SQL || fail "$name: EXPLAIN without indexes failed"
BEGIN;
$drop_indexes
EXPLAIN $sql;
ROLLBACK;
SQL
	assert_match "$(seq_scans <"$T/$name.noidx")" "Seq Scan on" "$name: without its indexes the planner would scan ($(seq_scans <"$T/$name.noidx"))"
done <"$T/figures"
assert_eq "$([ "$n" -ge 10 ] && echo yes)" yes "every figure's statement was explained ($n)"

# The numbers.
run_fig() { q "$(grep "^$1	" "$T/figures" | cut -f2-)"; }
assert_eq "$(run_fig sampler.events_pending)" 2000 "sampler: pending events"
assert_eq "$(run_fig sampler.dead_letters)" 60000 "sampler: dead letters, exact under the limit"
assert_eq "$(run_fig sampler.deliveries)" "4900|15000" "sampler: pending and dead deliveries"

conf "$T/s.conf"
J=$("$BIN" -c "$T/s.conf" status --json) || die "status failed"
printf '%s\n' "$J" >"$T/status.json"
assert_eq "$(jget "$J" 'deliveries,pending')|$(jget "$J" 'deliveries,in_flight')|$(jget "$J" 'deliveries,failed')|$(jget "$J" 'deliveries,dead')" \
	"4900|100|10000|15000" "status: pending, in flight, failed and dead deliveries"
assert_eq "$(jget "$J" 'deliveries,delivered_estimated')" true "status: 170,000 delivered is past the limit: an estimate"
assert_eq "$(q "SELECT abs($(jget "$J" 'deliveries,delivered') - 170000) <= 5100")" t \
	"status: the estimate is within 3 % ($(jget "$J" 'deliveries,delivered'))"
assert_eq "$(jget "$J" 'deliveries,delivered_last_hour')" 1700 "status: delivered in the last hour"
assert_eq "$(jget "$J" 'dead_letters,total')" 60000 "status: dead letters"
assert_eq "$(q "SELECT string_agg(event_type || '=' || n, ',' ORDER BY n DESC, event_type) FROM
                (SELECT event_type, count(*) n FROM event_dead_letters GROUP BY event_type) x")" \
	"$(for i in 0 1 2 3 4 5; do printf '%s=%s\n' "$(jget "$J" "dead_letters,by_type,$i,event_type")" "$(jget "$J" "dead_letters,by_type,$i,count")"; done | paste -sd,)" \
	"status: dead letters by type, most first"
assert_eq "$(q "SELECT max(created_at) = '$(jget "$J" 'dead_letters,by_type,0,latest')'::timestamptz FROM event_dead_letters
                WHERE event_type = '$(jget "$J" 'dead_letters,by_type,0,event_type')'")" t "status: latest dead letter of a type"
OUT=$("$BIN" -c "$T/s.conf" status) || fail "status (text) failed"
assert_match "$OUT" '^  delivered +about [0-9]+ \(counted up to 100000, then the planner.s estimate\)$' "status text: the estimate says so"
assert_match "$OUT" '^  delivered, last hour +[0-9]+$' "status text: delivered in the last hour"
assert_match "$OUT" '^  dead +15000$' "status text: dead deliveries"

# Under the limit the total is exact.
q "DELETE FROM deliveries WHERE status = 'delivered' AND id IN
     (SELECT id FROM deliveries WHERE status = 'delivered' LIMIT 169990)" >/dev/null
J=$("$BIN" -c "$T/s.conf" status --json) || die "status failed"
assert_eq "$(jget "$J" 'deliveries,delivered')|$(jget "$J" 'deliveries,delivered_estimated')" "10|false" \
	"status: under the limit, delivered is exact"
finish
