#!/usr/bin/env bash
# A round of results costs the same per result at any size: recording 256
# results in one pgeventd_finish_deliveries() call (as the relay plans it,
# generically) updates each in-flight row through its primary key and
# never compares the results with one another (a first version joined them
# a second time by position, in a nested loop: 65,280 rows removed by its
# join filter for 256 results). Every result is applied, fenced by its lease:
# a stale lease among them changes nothing and is logged as not applied.
. "$(dirname "$0")/lib.sh"
setup_db

q "INSERT INTO subscriptions (name, url, secret, max_in_flight) VALUES ('s', 'http://127.0.0.1:1/', 'x', 1000)"
q "INSERT INTO deliveries (event_id, subscription_id, event_type, body, status, attempt, lease,
                           locked_until)
   SELECT gen_random_uuid(), (SELECT id FROM subscriptions), 't', '{}', 'in_flight', 1, g,
          now() + interval '1 minute'
     FROM generate_series(1, 256) g"
q "INSERT INTO deliveries (event_id, subscription_id, event_type, body)
   SELECT gen_random_uuid(), (SELECT id FROM subscriptions), 't', '{}' FROM generate_series(1, 5000)"
q "VACUUM ANALYZE deliveries"

# The plan of every statement the call runs, as the relay's session runs
# it (plan_cache_mode as in delivery_prepare). Lease 1 comes back with a
# stale token (1000001): it is not applied.
plans=$(psql -X -q -A -t -v ON_ERROR_STOP=1 2>&1 <<'SQL'
SET plan_cache_mode = force_generic_plan;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
SELECT array_to_string(pgeventd_finish_deliveries(
         array_agg(id ORDER BY lease), array_agg(CASE WHEN lease = 1 THEN 1000001 ELSE lease END
                                                 ORDER BY lease),
         array_agg(attempt), array_agg('delivered'::text), array_agg(200), array_agg(NULL::text),
         array_agg('ok'::text), array_agg(0::float8), array_agg(1.0::float8), array_agg(0::bigint),
         5, 60000, 0, false), ',')
  FROM deliveries WHERE status = 'in_flight';
SQL
) || die "finishing the round: $plans"
printf '%s\n' "$plans" >"$T/plans.txt"

removed=$(grep -Eo 'Rows Removed by Join Filter: [0-9]+' "$T/plans.txt" | paste -sd, -)
assert_eq "$removed" "" "the round's results are never compared with one another"
assert_match "$(grep -A3 'Update on deliveries' "$T/plans.txt")" \
	'Index Scan using deliveries_pkey on deliveries' "each row is updated through its primary key"
applied=$(grep -E '^[tf](,[tf])*$' "$T/plans.txt")
assert_eq "$(tr ',' '\n' <<<"$applied" | sort | uniq -c | tr -s ' ' | paste -sd, -)" " 1 f, 255 t" \
	"255 results applied, the stale lease not"
assert_eq "$(q "SELECT status || ' ' || count(*) FROM deliveries WHERE lease IS NOT NULL
                GROUP BY status ORDER BY 1" | paste -sd, -)" "delivered 255,in_flight 1" \
	"255 delivered, the delivery under another lease still in flight"
assert_eq "$(q "SELECT count(*) || ' ' || count(*) FILTER (WHERE applied) FROM delivery_attempts")" \
	"256 255" "every result logged, 255 of them applied"
finish
