#!/usr/bin/env bash
# The shipped example (etc/examples/sql-routes.sql and sql-routes.conf),
# as the README tells an operator to use it: credits are awarded once per
# intro however many intro.completed events arrive, an intro that is not
# there yet is retried (PGR01) until it is, a bad payload is dead-lettered
# with the function's SQLSTATE, detail and hint, and user.message.received
# moves the user's last activity forward only.
. "$(dirname "$0")/lib.sh"
EX="$PGEVENTD_SRCDIR/etc/examples"
setup_db
psql -X -q -v ON_ERROR_STOP=1 -f "$EX/sql-routes.sql" >/dev/null || die "the example's SQL failed"
PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -f "$EX/sql-routes.sql" >/dev/null || die "the example's SQL is not re-runnable"
# The example's routes, verbatim, plus test settings.
conf "$T/a.conf" "$(grep -v '^#' "$EX/sql-routes.conf")" 'workers = 1;' 'max_attempts = 1000;' \
	'backoff = { base_ms = 200; cap_ms = 200; jitter = 0.0; };'
"$BIN" -c "$T/a.conf" check-config >/dev/null 2>&1 || die "the example's routes are not a valid configuration"
U1=11111111-1111-1111-1111-111111111111
U2=22222222-2222-2222-2222-222222222222
I1=aaaaaaaa-0000-0000-0000-000000000001
I2=aaaaaaaa-0000-0000-0000-000000000002
q "INSERT INTO app.users (id) VALUES ('$U1'), ('$U2');
INSERT INTO app.intros (id, introducer_id) VALUES ('$I1', '$U1')"
start_daemon a "$T/a.conf"
q "INSERT INTO events (event_type, payload) VALUES
 ('intro.completed', '{\"intro_id\": \"$I1\", \"credits\": 25}'),
 ('intro.completed', '{\"intro_id\": \"$I1\", \"credits\": 25}'),
 ('intro.completed', '{\"intro_id\": \"$I2\"}'),
 ('intro.completed', '{\"intro\": 1}'),
 ('user.message.received', '{\"user_id\": \"$U2\"}')"
q "INSERT INTO events (event_type, payload, created_at) VALUES ('user.message.received', '{\"user_id\": \"$U2\"}', now() - interval '1 day')"
wait_for "SELECT count(*) FROM events WHERE event_type = 'user.message.received' AND processed" 2 10 || fail "messages not handled"
wait_for "SELECT count(*) FROM events WHERE payload->>'intro_id' = '$I1' AND processed" 2 10 || fail "intro events not handled"
assert_eq "$(q "SELECT credits FROM app.users WHERE id = '$U1'")" 25 "credits awarded once for two intro.completed events"
assert_eq "$(q "SELECT count(*) FROM app.credit_awards")" 1 "one award row"
assert_eq "$(q "SELECT status FROM app.intros WHERE id = '$I1'")" completed "the intro is completed"
assert_eq "$(q "SELECT last_active_at = (SELECT max(created_at) FROM events WHERE event_type = 'user.message.received') FROM app.users WHERE id = '$U2'")" t \
	"last activity is the newest message, not the late one"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE payload ? 'intro'")" \
	'function app.on_intro_completed: SQLSTATE 22023: intro.completed: payload.intro_id must be a string (detail: payload: {"intro": 1}; hint: publish {"intro_id": "<uuid>"})' \
	"a bad payload is dead-lettered with the function's SQLSTATE, detail and hint"
# The intro that was not there yet: retried, then awarded once it exists.
wait_for "SELECT attempts >= 1 AND NOT processed FROM events WHERE payload->>'intro_id' = '$I2'" t 10 || fail "missing intro: not retried"
assert_match "$(q "SELECT last_error FROM events WHERE payload->>'intro_id' = '$I2'")" "SQLSTATE PGR01: intro $I2 not found" "the retry says why"
q "INSERT INTO app.intros (id, introducer_id) VALUES ('$I2', '$U2')"
wait_for "SELECT processed FROM events WHERE payload->>'intro_id' = '$I2'" t 10 || fail "missing intro: never handled"
assert_eq "$(q "SELECT credits FROM app.users WHERE id = '$U2'")" 10 "then awarded the default 10 credits"
stop_daemon $DPID
assert_eq $? 0 "clean exit"
finish
