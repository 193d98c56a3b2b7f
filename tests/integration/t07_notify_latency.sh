#!/usr/bin/env bash
# With poll_interval_ms = 60000 and listen on, an inserted event is handled
# within 1 s: LISTEN/NOTIFY wakes the worker.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'poll_interval_ms = 60000;' 'listen = true;'
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 2 || die "workers did not start"
sleep 1  # the first (empty) claims are done; workers now sleep for 60 s
for i in 1 2 3; do
	ID=$(q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}') RETURNING id")
	wait_for "SELECT processed FROM events WHERE id = '$ID'" t 5 || die "event $i not handled"
	lat=$(q "SELECT round(extract(epoch FROM processed_at - created_at) * 1000) FROM events WHERE id = '$ID'")
	[ "$lat" -lt 1000 ] && log "ok: event $i handled ${lat} ms after insert" || fail "event $i took ${lat} ms"
	sleep 0.3
done
# And with listen = false the poll interval is the latency: nothing within 1 s.
stop_daemon $DPID
conf "$T/b.conf" 'poll_interval_ms = 60000;' 'listen = false;'
start_daemon b "$T/b.conf"
wait_log b 'worker started' 10 2 || die "workers did not start"
sleep 1
ID=$(q "INSERT INTO events (event_type, payload) VALUES ('test.effect', '{}') RETURNING id")
sleep 1.5
assert_eq "$(q "SELECT processed FROM events WHERE id = '$ID'")" f "poll-only mode does not LISTEN"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
