#!/usr/bin/env bash
# Migrations: run refuses while pending; two concurrent migrates are safe;
# a changed migration is refused; idempotency_key dedups producers'
# INSERTs; a database of the original service is upgraded in place.
. "$(dirname "$0")/lib.sh"
createdb "$PGDATABASE" || die createdb
conf "$T/a.conf"

out=$(timeout 20 "$BIN" -c "$T/a.conf" run 2>&1); rc=$?
assert_eq $rc 75 "run with pending migrations: exit 75"
assert_match "$out" 'migrations pending.*core/0001_events.sql.*test/0001_test_tables.sql' "names the pending migrations"

# The original service's table, with a row its producers wrote.
q "CREATE TABLE events (id UUID PRIMARY KEY, event_type VARCHAR(100) NOT NULL, aggregate_id UUID,
   aggregate_type VARCHAR(50), payload JSONB NOT NULL, metadata JSONB, processed BOOLEAN DEFAULT FALSE,
   version INTEGER DEFAULT 1, created_at TIMESTAMPTZ DEFAULT now(), created_by VARCHAR(100))"
q "INSERT INTO events (id, event_type, payload) VALUES ('11111111-1111-1111-1111-111111111111', 'test.effect', '{}')"

"$BIN" -c "$T/a.conf" migrate >"$T/m1.log" 2>&1 &
M1=$!
"$BIN" -c "$T/a.conf" migrate >"$T/m2.log" 2>&1 &
M2=$!
wait $M1; r1=$?; wait $M2; r2=$?
assert_eq "$r1$r2" 00 "two concurrent migrates both succeed"
# core's migrations plus the test pack's
N=$(ls "$PGEVENTD_SRCDIR"/migrations/*.sql "$PGEVENTD_SRCDIR"/tests/migrations/*.sql | wc -l)
assert_eq "$(q 'SELECT count(*) FROM pgeventd_schema_migrations')" $N "each migration recorded once"
assert_eq "$(cat "$T/m1.log" "$T/m2.log" | grep -c 'msg="migration applied"')" $N "each applied once"
assert_eq "$(q "SELECT count(*) FROM pgeventd_schema_migrations WHERE checksum ~ '^[0-9a-f]{64}$'")" $N "sha256 recorded"

out=$("$BIN" -c "$T/a.conf" migrate 2>&1); rc=$?
assert_eq "$rc|$out" "0|0 migrations applied; schema is current" "migrate again: nothing to do"

# producers' INSERTs: the original form, and the idempotent one
q "INSERT INTO events (event_type, payload, idempotency_key) VALUES ('test.effect', '{}', 'order-42') ON CONFLICT (idempotency_key) DO NOTHING"
q "INSERT INTO events (event_type, payload, idempotency_key) VALUES ('test.effect', '{}', 'order-42') ON CONFLICT (idempotency_key) DO NOTHING"
assert_eq "$(q "SELECT count(*) FROM events WHERE idempotency_key = 'order-42'")" 1 "idempotency_key dedups"
start_daemon a "$T/a.conf" --once; wait $DPID
assert_eq "$(q "SELECT count(*) FROM test_effects")" 2 "the original row and the new one were handled"
assert_eq "$(q "SELECT processed FROM events WHERE id = '11111111-1111-1111-1111-111111111111'")" t "the pre-existing row was processed"

q "UPDATE pgeventd_schema_migrations SET checksum = repeat('0', 64) WHERE pack = 'core'"
out=$("$BIN" -c "$T/a.conf" migrate 2>&1); rc=$?
assert_eq $rc 1 "changed migration: migrate fails"
assert_match "$out" 'migration core/0001_events.sql was changed after it was applied' "says which migration changed"
out=$(timeout 20 "$BIN" -c "$T/a.conf" run 2>&1); rc=$?
assert_match "$rc $out" '^65 .*was changed after it was applied' "run refuses too: exit 65"
finish
