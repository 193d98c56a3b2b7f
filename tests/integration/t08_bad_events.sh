#!/usr/bin/env bash
# Unknown type and malformed payload: dead-lettered with a clear error
# while the other events of the batch commit; skip policy marks processed.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'batch_size = 50;'
U=$(q "INSERT INTO events (event_type, payload) VALUES ('nope.unknown', '{}') RETURNING id")
M=$(q "INSERT INTO events (event_type, payload) VALUES ('pgeventd.probe', '[1, 2]') RETURNING id")
B=$(q "INSERT INTO events (event_type, payload) VALUES ('pgeventd.probe', '{\"fail\": 42}') RETURNING id")
insert_events test.effect 5 "'{}'"
start_daemon a "$T/a.conf" --once
wait $DPID; assert_eq $? 0 "run --once exits 0"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$U'")" "no handler registered for event type nope.unknown" "unknown type dead-lettered"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$M'")" "payload must be a JSON object, got array" "non-object payload dead-lettered"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$B'")" 'fail must be "retry" or "permanent", got number' "bad field dead-lettered with the field's name"
assert_eq "$(q "SELECT count(*) FROM test_effects")" 5 "the good events of the batch committed"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "nothing left"

conf "$T/b.conf" 'unknown_event_policy = "skip";'
K=$(q "INSERT INTO events (event_type, payload) VALUES ('nope.skipped', '{}') RETURNING id")
start_daemon b "$T/b.conf" --once
wait $DPID; assert_eq $? 0 "run --once exits 0"
assert_eq "$(q "SELECT processed || '|' || last_error FROM events WHERE id = '$K'")" "true|no handler registered for event type nope.skipped" "skip policy: processed, reason kept"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters WHERE event_id = '$K'")" 0 "skip policy: no dead letter"
finish
