#!/usr/bin/env bash
# Out of order: a check-in (and an activity, a feedback and the end) of a
# match that has not arrived is retried (RETRY, with the reason in
# last_error, nothing written), and lands once the match is created.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'packs = ["buddy"];' 'max_attempts = 50;' \
	'backoff = { base_ms = 100; factor = 1.5; cap_ms = 300; };'
"$BIN" -c "$T/a.conf" migrate >"$T/migrate-buddy.out" 2>&1 || die "migrate buddy: $(cat "$T/migrate-buddy.out")"
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"

CI=$(q "INSERT INTO events (event_type, payload) VALUES ('buddy.checkin.completed',
  '{\"checkinId\": \"c-9\", \"matchId\": \"m-9\", \"userId\": \"u-1\", \"mood\": 2, \"checkedInAt\": \"2025-11-15T08:00:00Z\"}') RETURNING id")
q "INSERT INTO events (event_type, payload, created_at) VALUES
  ('buddy.event.logged', '{\"activityId\": \"a-9\", \"matchId\": \"m-9\", \"activityType\": \"hangout\", \"occurredAt\": \"2025-11-16T18:00:00Z\"}', clock_timestamp()),
  ('buddy.feedback.submitted', '{\"feedbackId\": \"f-9\", \"matchId\": \"m-9\", \"fromUserId\": \"u-1\", \"rating\": 4, \"submittedAt\": \"2025-11-17T12:00:00Z\"}', clock_timestamp()),
  ('buddy.match.ended', '{\"matchId\": \"m-9\", \"endedAt\": \"2025-12-01T00:00:00Z\", \"reason\": \"moved away\"}', clock_timestamp())" >/dev/null

# Retried, not dead-lettered, while the match is missing.
wait_for "SELECT count(*) FROM events WHERE attempts >= 2 AND NOT processed" 4 10 || die "not retried"
assert_eq "$(q "SELECT last_error FROM events WHERE id = '$CI'")" "buddy.checkin.completed: matchId m-9 does not exist yet" "check-in: transient failure names the missing match"
assert_eq "$(q "SELECT string_agg(last_error, ' / ' ORDER BY created_at) FROM events WHERE id <> '$CI'")" \
	"buddy.event.logged: matchId m-9 does not exist yet / buddy.feedback.submitted: matchId m-9 does not exist yet / buddy.match.ended: matchId m-9 does not exist yet" \
	"activity, feedback and end wait for the match too"
assert_eq "$(q "SELECT (SELECT count(*) FROM buddy_system_events) + (SELECT count(*) FROM buddy_checkins) + (SELECT count(*) FROM buddy_events) + (SELECT count(*) FROM event_dead_letters)")" 0 \
	"nothing written while waiting, nothing dead-lettered"
assert_match "$(grep "event_id=$CI" "$T/a.log" | head -n 1)" 'outcome=retry retry_in_ms=[0-9]+ error="buddy.checkin.completed: matchId m-9 does not exist yet"' "retry logged"

# The match arrives: everything that waited lands.
q "INSERT INTO events (event_type, payload) VALUES ('buddy.match.created',
  '{\"matchId\": \"m-9\", \"participantId\": \"u-1\", \"buddyId\": \"u-2\", \"matchedAt\": \"2025-11-01T09:00:00Z\"}')" >/dev/null
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 10 || die "waiting events did not land"
assert_eq "$(q "SELECT concat_ws('|', processed, attempts >= 2, last_error IS NULL) FROM events WHERE id = '$CI'")" "t|t|t" "check-in processed after retries, error cleared"
assert_eq "$(q "SELECT concat_ws('|', checkin_id, match_id, mood, event_id) FROM buddy_checkins")" "c-9|m-9|2|$CI" "check-in row written once the match exists"
assert_eq "$(q "SELECT concat_ws(' ', (SELECT count(*) FROM buddy_events), (SELECT count(*) FROM buddy_feedback), (SELECT status || '/' || end_reason FROM buddy_matches), (SELECT count(*) FROM buddy_system_events), (SELECT count(*) FROM event_dead_letters))")" \
	"1 1 ended/moved away 5 0" "activity, feedback and end landed; no dead letter"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
