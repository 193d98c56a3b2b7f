#!/usr/bin/env bash
# A handler that crashes the process: restarted like systemd would, the
# event is dead-lettered after max_attempts crashes and the rest flow.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'max_attempts = 3;' 'batch_size = 20;'
q "INSERT INTO events (event_type, payload, created_at) SELECT 'test.effect', '{}', now() - interval '1 min' FROM generate_series(1, 5)"
C=$(q "INSERT INTO events (event_type, payload, created_at) VALUES ('test.crash', '{}', now() - interval '30 s') RETURNING id")
q "INSERT INTO events (event_type, payload) SELECT 'test.effect', '{}' FROM generate_series(1, 5)"

crashes=0
for run in 1 2 3 4 5 6 7 8; do
	"$BIN" -c "$T/a.conf" run --once >>"$T/runs.log" 2>&1
	rc=$?
	[ $rc = 0 ] && break
	crashes=$((crashes + 1))
done
assert_eq "$rc" 0 "the daemon stops crashing"
assert_eq "$crashes" 3 "it crashed max_attempts times"
assert_match "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$C'")" '^handler crashed: the process died 3 times while handling this event' "crashing event dead-lettered, saying why"
assert_eq "$(q "SELECT handler FROM event_dead_letters WHERE event_id = '$C'")" test_crash "dead letter names the handler"
assert_eq "$(q 'SELECT count(*) FROM test_effects')" 10 "the other events were all handled"
assert_eq "$(q 'SELECT count(DISTINCT event_id) FROM test_effects')" 10 "none twice"
assert_eq "$(q 'SELECT count(*) FROM event_dead_letters')" 1 "only the crashing event dead-lettered"
assert_eq "$(q 'SELECT count(*) FROM pgeventd_inflight')" 0 "no crash marks left"
finish
