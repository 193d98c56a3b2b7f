#!/usr/bin/env bash
# Exactly-once effects under kill -9: a routed function that is not
# idempotent (a plain INSERT per call, no key) writes inside the batch
# transaction, so a daemon killed mid-batch leaves nothing of the batch
# and the restart runs it again. After three kills and a last run, every
# event has exactly one row, whether it went in a run of one route's
# events (one statement) or alone after a retry (its savepoint).
. "$(dirname "$0")/lib.sh"
setup_db
q "CREATE SCHEMA app;
CREATE TABLE app.effects (event_id uuid NOT NULL);
CREATE FUNCTION app.count_once(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.effects VALUES (ev.id);
  PERFORM pg_sleep(0.01);
END \$\$;
CREATE FUNCTION app.count_later(ev events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO app.effects VALUES (ev.id);
  IF ev.attempts = 0 THEN RAISE EXCEPTION 'later' USING ERRCODE = 'PGR01'; END IF;
END \$\$;"
conf "$T/a.conf" 'workers = 2;' 'batch_size = 50;' 'max_attempts = 10;' \
	'backoff = { base_ms = 100; cap_ms = 100; jitter = 0.0; };' \
	'routes = (' '  { events = ["app.once"]; call = "app.count_once"; },' \
	'  { events = ["app.later"]; call = "app.count_later"; }' ');'
N=600
q "INSERT INTO events (event_type, payload) SELECT CASE WHEN i % 10 = 0 THEN 'app.later' ELSE 'app.once' END, '{}' FROM generate_series(1, $N) i"
for k in 1 2 3; do
	start_daemon k$k "$T/a.conf"
	before=$(q "SELECT count(*) FROM events WHERE processed")
	wait_for "SELECT count(*) > $before + 20 FROM events WHERE processed" t 30 || die "no progress before kill $k"
	sleep 0.$((RANDOM % 5 + 1))
	kill -9 $DPID; wait $DPID 2>/dev/null
	log "kill $k with $(q "SELECT count(*) FROM events WHERE processed") of $N processed"
	assert_eq "$(q "SELECT count(*) FROM app.effects e JOIN events v ON v.id = e.event_id WHERE NOT v.processed AND v.attempts = 0")" 0 \
		"kill $k: no effect left of an event not yet processed"
done
[ "$(q "SELECT count(*) FROM events WHERE processed")" -lt $N ] || fail "the kills came too late to test anything"
start_daemon last "$T/a.conf"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 60 || die "not finished after the restarts"
assert_eq "$(q "SELECT count(*) FROM app.effects")" $N "one effect per event"
assert_eq "$(q "SELECT count(DISTINCT event_id) FROM app.effects")" $N "none twice"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 0 "no dead letter"
assert_eq "$(q "SELECT count(*) FROM events WHERE event_type = 'app.later' AND attempts >= 2")" $((N / 10)) "the app.later events were retried once each"
stop_daemon $DPID
assert_eq $? 0 "clean exit"
finish
