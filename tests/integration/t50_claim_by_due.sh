#!/usr/bin/env bash
# The claim reads only what is due: events in backoff or scheduled for
# later cost it nothing (plan and buffers), a producer's next_attempt_at
# delays an event to that time and not past it, and migration 0004 upgrades
# a database holding events in backoff, processed and dead-lettered ones
# without losing or re-running any.
. "$(dirname "$0")/lib.sh"
setup_db

# ---- the claim's plan with 50,000 scheduled rows ahead of 10 due ones -----
q "INSERT INTO events (event_type, payload, created_at, next_attempt_at)
   SELECT 'test.effect', '{}', now() - interval '1 hour', now() + interval '1 day'
   FROM generate_series(1, 50000)"
q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 10)"
q "VACUUM ANALYZE events"
# The daemon's own claim statement, as pg_prepared_statements shows it.
conf "$T/a.conf" 'workers = 1;'
start_daemon a "$T/a.conf"
wait_for "SELECT count(*) FROM events WHERE processed" 10 20 || die "the 10 due events were not handled"
stop_daemon $DPID
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 50000 "scheduled events left alone"
assert_eq "$(q "SELECT count(*) FROM test_effects")" 10 "exactly the due events ran"

q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 10)"
PLAN=$(psql -X -q -A -t <<'EOF'
PREPARE c(int, timestamptz) AS
SELECT e.id, coalesce((SELECT m.runs FROM pgeventd_inflight m WHERE m.event_id = e.id), 0)
  FROM events e
 WHERE NOT e.processed AND e.pgeventd_key IS NULL
   AND coalesce(e.next_attempt_at, e.created_at) >= $2 - interval '1 second'
   AND coalesce(e.next_attempt_at, e.created_at) <= now()
 ORDER BY coalesce(e.next_attempt_at, e.created_at), e.id
 LIMIT $1 FOR UPDATE OF e SKIP LOCKED;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE c(100, '-infinity');
EOF
)
log "plan: $(printf '%s' "$PLAN" | tr '\n' '|')"
assert_match "$PLAN" 'Index Scan using events_due_idx' "the claim reads events_due_idx"
if printf '%s' "$PLAN" | grep -q 'Rows Removed by Filter'; then
	fail "the claim filters rows it read: $(printf '%s' "$PLAN" | grep 'Rows Removed')"
else
	log "ok: no row read and thrown away"
fi
bufs=$(printf '%s' "$PLAN" | sed -n 's/.*Buffers: shared hit=\([0-9]*\).*/\1/p' | head -n 1)
bufs=${bufs:-0}
[ "$bufs" -lt 100 ] && log "ok: claim touched $bufs buffers" ||
	fail "claim touched $bufs buffers with 50,000 scheduled rows (want < 100)"

# ---- a producer schedules an event ------------------------------------
q "DELETE FROM events"
q "TRUNCATE test_effects"
start_daemon b "$T/a.conf"
wait_log b 'worker started' 10 || die "daemon did not start"
DUE=$(q "INSERT INTO events (event_type, payload, next_attempt_at)
         VALUES ('test.effect', '{}', clock_timestamp() + interval '2 seconds') RETURNING next_attempt_at")
sleep 1
assert_eq "$(q "SELECT count(*) FROM test_effects")" 0 "not run before its time"
wait_for "SELECT count(*) FROM test_effects" 1 5 || fail "scheduled event never ran"
assert_eq "$(q "SELECT (min(created_at) < '$DUE')::text FROM test_effects")" false \
	"ran no earlier than next_attempt_at"
late=$(q "SELECT round(extract(epoch FROM min(created_at) - '$DUE') * 1000) FROM test_effects")
[ "${late:-99999}" -lt 500 ] && log "ok: ran $late ms after next_attempt_at" ||
	fail "ran ${late:-never} ms after next_attempt_at (want < 500)"
stop_daemon $DPID

# ---- migration 0004 upgrades a database in use -------------------------
# Put the database back to 0003's schema: the old index and triggers.
q "DROP INDEX events_due_idx"
q "CREATE INDEX events_unprocessed_idx ON events (created_at, id) WHERE NOT processed"
q "DROP TRIGGER events_notify_insert ON events"
q "CREATE OR REPLACE FUNCTION pgeventd_notify_insert() RETURNS trigger LANGUAGE plpgsql AS
   \$\$ BEGIN PERFORM pg_notify('pgeventd_events', ''); RETURN NULL; END \$\$"
q "CREATE TRIGGER events_notify_insert AFTER INSERT ON events
   FOR EACH STATEMENT EXECUTE FUNCTION pgeventd_notify_insert()"
q "DELETE FROM pgeventd_schema_migrations WHERE pack = 'core' AND version = 4"
q "DELETE FROM events"
q "TRUNCATE test_effects, event_dead_letters"
# One processed, one dead-lettered, one in backoff (due in an hour).
q "INSERT INTO events (event_type, payload, processed, processed_at, attempts)
   VALUES ('test.effect', '{\"k\":\"done\"}', true, now(), 1)"
q "INSERT INTO events (event_type, payload, processed, processed_at, attempts, last_error)
   VALUES ('test.effect', '{\"k\":\"dead\"}', true, now(), 5, 'boom')"
q "INSERT INTO event_dead_letters (event_id, event_type, payload, error_message, retry_count,
   original_created_at) SELECT id, event_type, payload, 'boom', 4, created_at FROM events
   WHERE payload->>'k' = 'dead'"
q "INSERT INTO events (event_type, payload, attempts, next_attempt_at, last_error)
   VALUES ('test.effect', '{\"k\":\"backoff\"}', 2, now() + interval '1 hour', 'later')"
before=$(q "SELECT string_agg(payload->>'k' || ':' || processed || ':' || attempts || ':' ||
            coalesce(next_attempt_at::text, '-'), ',' ORDER BY payload->>'k') FROM events")
"$BIN" -c "$T/migrate.conf" migrate >"$T/migrate2.out" 2>&1 || { cat "$T/migrate2.out"; die "migrate 0004"; }
assert_match "$(cat "$T/migrate2.out")" '0004_claim_by_due' "migrate applied 0004"
after=$(q "SELECT string_agg(payload->>'k' || ':' || processed || ':' || attempts || ':' ||
           coalesce(next_attempt_at::text, '-'), ',' ORDER BY payload->>'k') FROM events")
assert_eq "$after" "$before" "no event changed by the migration"
assert_eq "$(q "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_unprocessed_idx'")" 0 "old index dropped"
assert_eq "$(q "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_due_idx'")" 1 "claim index built"
"$BIN" -c "$T/a.conf" run --once >"$T/once.log" 2>&1 || fail "run --once after the upgrade"
assert_eq "$(q "SELECT count(*) FROM test_effects")" 0 "nothing re-run: the backoff event is not due"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 1 "the dead letter kept"
q "UPDATE events SET next_attempt_at = now() WHERE payload->>'k' = 'backoff'"
"$BIN" -c "$T/a.conf" run --once >"$T/once2.log" 2>&1 || fail "run --once"
assert_eq "$(q "SELECT string_agg(processed::text || ':' || attempts, ',') FROM events
              WHERE payload->>'k' = 'backoff'")" "true:3" "the backoff event ran once when due"
assert_eq "$(q "SELECT count(*) FROM test_effects")" 1 "one effect in all"
finish
