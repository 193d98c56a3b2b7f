#!/usr/bin/env bash
# A batch of events whose handlers write never needs more than 64
# subtransactions (PostgreSQL's per-session cache; past it every snapshot
# of the cluster pays pg_subtrans lookups), measured by PostgreSQL itself:
# each writing handler records how many transaction ids its session holds
# (one lock per live xid). A failing handler still rolls back only its own
# event's writes.
. "$(dirname "$0")/lib.sh"
setup_db
q "INSERT INTO events (event_type, payload, created_at)
   SELECT CASE WHEN g % 10 = 5 THEN 'test.write_then_fail' ELSE 'test.xids' END, '{}',
          now() - interval '1 minute' + g * interval '1 millisecond'
   FROM generate_series(1, 200) g"
conf "$T/a.conf" 'workers = 1;' 'batch_size = 100;' 'max_attempts = 1;'
"$BIN" -c "$T/a.conf" run --once >"$T/a.log" 2>&1 || die "run --once failed"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "every event handled"
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_type LIKE 'xids:%'")" 180 "every writing handler's effect committed"
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_type = 'test.write_then_fail'")" 0 \
	"the failing handlers' writes rolled back"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 20 "the failing events dead-lettered"
max=$(q "SELECT max(substr(event_type, 6)::int) FROM test_effects WHERE event_type LIKE 'xids:%'")
log "most transaction ids one batch session held: $max"
[ "${max:-999}" -le 65 ] && log "ok: at most 64 subtransactions (+ the top one) per batch" ||
	fail "a batch held $max transaction ids: over PostgreSQL's 64 cached subtransactions"
# Batches still take many events at once: the cap splits, it does not serialise.
batches=$(grep -c 'msg="event handled"' "$T/a.log")
assert_eq "$batches" 200 "200 outcomes logged"
finish
