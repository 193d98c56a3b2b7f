#!/usr/bin/env bash
# A handler that writes and then fails: its write is rolled back; a handler
# whose statement fails is retried; the rest of the batch commits.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'workers = 1;' 'max_attempts = 2;' 'backoff = { base_ms = 50; };'
W=$(q "INSERT INTO events (event_type, payload, created_at) VALUES ('test.write_then_fail', '{}', now() - interval '3 s') RETURNING id")
S=$(q "INSERT INTO events (event_type, payload, created_at) VALUES ('test.sql_error', '{}', now() - interval '2 s') RETURNING id")
q "INSERT INTO events (event_type, payload, created_at) SELECT 'test.effect', '{}', now() - interval '1 s' FROM generate_series(1, 5)"
start_daemon a "$T/a.conf" --once
wait $DPID; assert_eq $? 0 "run --once exits 0"
sleep 0.2  # the retry of test.sql_error is due after 50 ms
start_daemon b "$T/a.conf" --once
wait $DPID
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_id = '$W'")" 0 "write of the failing handler rolled back"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters WHERE event_id = '$W' AND error_message = 'wrote, then failed'")" 1 "failing writer dead-lettered"
assert_match "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$S'")" 'relation "no_such_table" does not exist' "statement error becomes the event's error"
assert_eq "$(q "SELECT count(*) FROM test_effects WHERE event_type = 'test.effect'")" 5 "other events of the batch committed"
assert_eq "$(q "SELECT count(*) FROM events WHERE NOT processed")" 0 "nothing left"
finish
