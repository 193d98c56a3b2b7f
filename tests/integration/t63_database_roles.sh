#!/usr/bin/env bash
# The roles README.md documents ("Database roles"), with its exact
# statements: an owner runs migrate; a runtime role with only the
# documented grants runs migrate on the current schema (exit 0, no DDL),
# run --once (a relay-routed event included) and the daemon with
# retention, and the DBA and relay commands; it can create nothing.
. "$(dirname "$0")/lib.sh"
OWNER="t50_owner_$$"
RUNTIME="t50_runtime_$$"
READER="t50_reader_$$"
drop_roles() {
	local r
	for r in "$OWNER" "$RUNTIME" "$READER"; do
		psql -X -q -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1
	done
}
trap 'cleanup; drop_roles' EXIT

# The statements between <!-- NAME:begin --> and <!-- NAME:end --> in the
# README, with this test's role names.
readme_sql() { # name
	sed -n "/<!-- $1:begin -->/,/<!-- $1:end -->/p" "$PGEVENTD_SRCDIR/README.md" |
		grep -v '^<!--' | sed 's/^    //' |
		sed "s/pgeventd_owner/$OWNER/g; s/pgeventd_runtime/$RUNTIME/g"
}
as() { # role sql
	psql -X -q -A -t -v ON_ERROR_STOP=1 -U "$1" -c "$2"
}

createdb "$PGDATABASE" || die "createdb"
roles=$(readme_sql roles)
grants=$(readme_sql grants)
[ -n "$roles" ] && [ -n "$grants" ] || die "no roles/grants block in README.md"
psql -X -q -v ON_ERROR_STOP=1 -c "$roles" || die "README's role statements failed"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE ROLE $READER LOGIN; GRANT USAGE ON SCHEMA public TO $READER" || die "reader"

start_sink '{"a": {"scheme": "standard", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}'
relay='relay = { event_types = ["job.*"]; };'
conf "$T/owner.conf" "database = { conninfo = \"user=$OWNER\"; };" "$relay"
conf "$T/runtime.conf" "database = { conninfo = \"user=$RUNTIME\"; };" "$relay"
conf "$T/daemon.conf" "database = { conninfo = \"user=$RUNTIME\"; };" "$relay" \
	'health = { listen = "127.0.0.1:0"; };' 'retention = { processed_after = "30d"; delivery_attempts_after = "1s"; deliveries_after = "30d"; interval = "1s"; };'
conf "$T/reader.conf" "database = { conninfo = \"user=$READER\"; };" "$relay"
O=("$BIN" -c "$T/owner.conf")
R=("$BIN" -c "$T/runtime.conf")

out=$("${R[@]}" migrate 2>&1)
[ $? != 0 ] && log "ok: the runtime role cannot migrate an empty database ($out)" || fail "runtime migrated: $out"
out=$("${O[@]}" migrate 2>&1)
assert_eq "$?" 0 "the owner migrates"
assert_match "$out" 'migrations? applied; schema is current' "migrate says so"
psql -X -q -v ON_ERROR_STOP=1 -U "$OWNER" -c "$grants" || die "README's grants failed as the owner"
as "$OWNER" "GRANT SELECT ON ALL TABLES IN SCHEMA public TO $READER" || die "reader grant"

# The runtime role: migrate on a current schema is a read.
out=$("${R[@]}" migrate 2>&1)
assert_eq "$?" 0 "migrate as the runtime role on a current schema: exit 0"
assert_match "$out" '^0 migrations applied; schema is current$' "it says the schema is current"
assert_eq "$(q "SELECT count(*) FROM pg_class WHERE relowner = '$RUNTIME'::regrole")" 0 "it created nothing"

# run --once: a plain event, a relay-routed one, a dead letter.
"${O[@]}" subscriptions add --name a --url "http://127.0.0.1:$SINK_PORT/a" --events 'job.*' \
	--secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw >/dev/null || die "subscriptions add"
insert_events test.effect 3 "'{}'"
insert_events job.created 2 "'{}'"
insert_events test.permanent 1 "'{}'"
"${R[@]}" run --once >"$T/once.log" 2>&1
assert_eq "$?" 0 "run --once as the runtime role: exit 0"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "every event handled"
assert_eq "$(q "SELECT count(*) FROM test_effects")" 3 "the handlers' writes committed"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 1 "the dead letter written"
assert_eq "$(q "SELECT string_agg(status, ',') FROM deliveries")" "delivered,delivered" "the relay delivered both"
assert_eq "$(grep -c 'permission denied' "$T/once.log")" 0 "no permission denied in the log"

# The daemon, with retention and the health server, for a moment.
start_daemon d "$T/daemon.conf"
health_port d >/dev/null || die "daemon did not start"
insert_events job.created 1 "'{}'"
wait_for "SELECT count(*) FROM deliveries WHERE status = 'delivered'" 3 10 || fail "the daemon's relay did not deliver"
wait_log d 'msg="retention pass"' 10 || fail "no retention pass"
stop_daemon "$DPID"
assert_eq "$?" 0 "the daemon stops cleanly"
assert_eq "$(grep -c 'permission denied' "$T/d.log")" 0 "no permission denied in the daemon's log"

# The DBA and relay commands.
ev=$(q "SELECT event_id FROM event_dead_letters LIMIT 1")
for cmd in "status" "status --json" "show $ev" "dead-letters list" "replay --id $ev" \
	"subscriptions list" "deliveries list" "subscriptions disable a" "subscriptions enable a" \
	"deliveries retry --subscription a"; do
	"${R[@]}" $cmd >"$T/cmd.out" 2>&1
	assert_eq "$?" 0 "runtime: $cmd"
done
assert_eq "$(q "SELECT processed FROM events WHERE id = '$ev'")" f "replay as the runtime role"
for cmd in "status" "show $ev" "dead-letters list" "subscriptions list" "deliveries list"; do
	"$BIN" -c "$T/reader.conf" $cmd >"$T/cmd.out" 2>&1
	assert_eq "$?" 0 "reader (SELECT only): $cmd"
done

# A later migration's table (as the lead's 0004 will add): the default
# privileges reach it without granting again.
as "$OWNER" "CREATE TABLE t50_later (id bigserial PRIMARY KEY, a int)" || fail "owner cannot create"
as "$RUNTIME" "INSERT INTO t50_later (a) VALUES (1); UPDATE t50_later SET a = 2; DELETE FROM t50_later" >/dev/null &&
	log "ok: a table the owner adds later is usable without new grants" || fail "a later table needs grants again"

# Least privilege: no DDL, no tampering with the migration record.
as "$RUNTIME" "CREATE TABLE t50_x (a int)" 2>/dev/null && fail "runtime can CREATE TABLE" || log "ok: runtime cannot create a table"
as "$RUNTIME" "DELETE FROM pgeventd_schema_migrations" 2>/dev/null && fail "runtime can edit the migration record" || log "ok: runtime cannot edit pgeventd_schema_migrations"
as "$RUNTIME" "TRUNCATE events" 2>/dev/null && fail "runtime can TRUNCATE" || log "ok: runtime cannot truncate"
finish
