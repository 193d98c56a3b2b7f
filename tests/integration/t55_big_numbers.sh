#!/usr/bin/env bash
# Numbers jsonb stores but jansson cannot hold (integers beyond 64 bits,
# 1e400) lose nothing: only a handler that reads the payload as JSON
# refuses them, with a message naming the limit; a handler that does not
# (pgeventd.noop) and the relay (which builds its body in SQL) take them.
. "$(dirname "$0")/lib.sh"
setup_db
q "INSERT INTO subscriptions (name, url, secret, event_types) VALUES
   ('keep', 'http://127.0.0.1:9/x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '[\"job.*\"]')"
BIG='{"big": 123456789012345678901234567890, "huge": 1e400, "neg": -99999999999999999999}'
q "INSERT INTO events (event_type, payload) VALUES
   ('pgeventd.noop', '$BIG'), ('job.done', '$BIG'), ('pgeventd.probe', '$BIG')"
conf "$T/a.conf" 'workers = 1;' 'relay = { event_types = ["job.*"]; };'
"$BIN" -c "$T/a.conf" run --once >"$T/a.log" 2>&1
assert_eq "$(q "SELECT processed || '|' || coalesce(last_error, '-') FROM events WHERE event_type = 'pgeventd.noop'")" \
	"true|-" "a handler that does not parse the payload takes it"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters WHERE event_type <> 'pgeventd.probe'")" 0 \
	"nothing but the parsing handler's event dead-lettered"
assert_eq "$(q "SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
               WHERE e.event_type = 'job.done'
                 AND (d.body::jsonb -> 'data') = e.payload
                 AND d.body LIKE '%123456789012345678901234567890%'")" 1 \
	"the relay queued the delivery with the numbers exactly as stored"
err=$(q "SELECT error_message FROM event_dead_letters WHERE event_type = 'pgeventd.probe'")
assert_match "$err" '^payload cannot be parsed for handler core_probe, which reads it as JSON: ' \
	"a handler that reads JSON gets a clear error"
assert_match "$err" 'jansson holds integers within 64 bits' "naming the limit"
assert_eq "$(q "SELECT payload = '$BIG'::jsonb FROM event_dead_letters WHERE event_type = 'pgeventd.probe'")" t \
	"the dead letter keeps the payload whole (replayable)"
finish
