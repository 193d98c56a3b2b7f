#!/usr/bin/env bash
# The buddy pack end to end: a match's whole story (all eight event types)
# lands in the buddy tables; replaying every event, replaying the match's
# creation after its end, and the same activity delivered as a second event
# add no row and do not re-activate the ended match.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'packs = ["buddy"];' 'backoff = { base_ms = 100; };'
"$BIN" -c "$T/a.conf" migrate >"$T/migrate-buddy.out" 2>&1 || die "migrate buddy: $(cat "$T/migrate-buddy.out")"
start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"

# One statement; clock_timestamp() keeps the story's order in (created_at, id).
C=3f1b3f8f-6a10-4c1f-9c55-6c4c1f0e1b7c
q "INSERT INTO events (event_type, payload, metadata, created_at) VALUES
  ('buddy.match.created', '{\"matchId\": \"m-1\", \"participantId\": \"u-p\", \"buddyId\": \"u-b\", \"matchedAt\": \"2025-11-01T09:00:00Z\", \"programId\": \"prog-1\"}', '{\"correlationId\": \"$C\"}', clock_timestamp()),
  ('buddy.event.logged', '{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": \"hangout\", \"occurredAt\": \"2025-11-03T18:00:00+01:00\", \"durationMinutes\": 120, \"notes\": \"coffee\"}', NULL, clock_timestamp()),
  ('buddy.event.logged', '{\"activityId\": \"a-2\", \"matchId\": \"m-1\", \"activityType\": \"workshop\", \"occurredAt\": \"2025-11-10T10:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.event.attended', '{\"programEventId\": \"pe-1\", \"userId\": \"u-p\", \"attendedAt\": \"2025-11-12T19:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.skill_share.completed', '{\"sessionId\": \"s-1\", \"teacherId\": \"u-b\", \"learnerId\": \"u-p\", \"skill\": \"cv writing\", \"durationMinutes\": 45, \"completedAt\": \"2025-11-14T16:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.checkin.completed', '{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": \"u-p\", \"mood\": 3, \"checkedInAt\": \"2025-11-15T08:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.checkin.completed', '{\"checkinId\": \"c-2\", \"matchId\": \"m-1\", \"userId\": \"u-p\", \"mood\": 5, \"checkedInAt\": \"2025-12-15T08:00:00Z\", \"notes\": \"settled in\"}', NULL, clock_timestamp()),
  ('buddy.feedback.submitted', '{\"feedbackId\": \"f-1\", \"matchId\": \"m-1\", \"fromUserId\": \"u-p\", \"rating\": 5, \"comment\": \"great\", \"submittedAt\": \"2026-01-20T12:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.milestone.reached', '{\"milestoneId\": \"ms-1\", \"userId\": \"u-p\", \"milestone\": \"first_job\", \"reachedAt\": \"2026-01-25T09:00:00Z\"}', NULL, clock_timestamp()),
  ('buddy.match.ended', '{\"matchId\": \"m-1\", \"endedAt\": \"2026-02-01T17:00:00Z\", \"reason\": \"completed\"}', NULL, clock_timestamp())"
wait_for "SELECT count(*) FROM events WHERE processed" 10 20 || die "story not processed"

assert_eq "$(q "SELECT count(*) FROM events WHERE last_error IS NOT NULL") $(q "SELECT count(*) FROM event_dead_letters")" "0 0" "no failure, no dead letter"
assert_eq "$(q "SELECT concat_ws('|', match_id, participant_id, buddy_id, program_id, status, matched_at AT TIME ZONE 'UTC', ended_at AT TIME ZONE 'UTC', end_reason) FROM buddy_matches")" \
	"m-1|u-p|u-b|prog-1|ended|2025-11-01 09:00:00|2026-02-01 17:00:00|completed" "buddy_matches: the match, ended with its reason"
assert_eq "$(q "SELECT string_agg(concat_ws('|', activity_id, match_id, activity_type, occurred_at AT TIME ZONE 'UTC', duration_minutes, notes), ' ; ' ORDER BY activity_id) FROM buddy_events")" \
	"a-1|m-1|hangout|2025-11-03 17:00:00|120|coffee ; a-2|m-1|workshop|2025-11-10 10:00:00" "buddy_events: both activities"
assert_eq "$(q "SELECT string_agg(concat_ws('|', checkin_id, user_id, mood, notes), ' ; ' ORDER BY checkin_id) FROM buddy_checkins")" \
	"c-1|u-p|3 ; c-2|u-p|5|settled in" "buddy_checkins: both check-ins"
assert_eq "$(q "SELECT concat_ws('|', feedback_id, from_user_id, rating, comment) FROM buddy_feedback")" "f-1|u-p|5|great" "buddy_feedback: the rating"
assert_eq "$(q "SELECT string_agg(event_type || '=' || coalesce(user_id, '-'), ' ' ORDER BY timestamp) FROM buddy_system_events")" \
	"buddy.match.created=u-p buddy.event.logged=- buddy.event.logged=- buddy.event.attended=u-p buddy.skill_share.completed=u-b buddy.checkin.completed=u-p buddy.checkin.completed=u-p buddy.feedback.submitted=u-p buddy.milestone.reached=u-p buddy.match.ended=-" \
	"buddy_system_events: every event raw, with its primary user, in order"
assert_eq "$(q "SELECT count(*) FROM buddy_system_events s JOIN events e ON e.id = s.event_id AND e.created_at = s.timestamp AND e.payload = s.payload AND s.processed_at IS NOT NULL")" 10 \
	"raw rows carry the event's id, created_at and payload"
assert_eq "$(q "SELECT correlation_id FROM buddy_system_events WHERE event_type = 'buddy.match.created'")" "$C" "correlation id from metadata.correlationId"
assert_match "$(grep 'event_type=buddy.feedback.submitted' "$T/a.log")" 'outcome=ok' "outcome logged"

snapshot() {
	q "SELECT concat_ws(' ', (SELECT count(*) FROM buddy_matches), (SELECT count(*) FROM buddy_events),
	   (SELECT count(*) FROM buddy_checkins), (SELECT count(*) FROM buddy_feedback),
	   (SELECT count(*) FROM buddy_system_events), (SELECT min(status) FROM buddy_matches),
	   (SELECT md5(string_agg(b::text, ',' ORDER BY b::text)) FROM (SELECT match_id, status, ended_at, end_reason, program_id FROM buddy_matches) b))"
}
before=$(snapshot)
log "before replay: $before"

# Replay every buddy event (the DBA's statement), wait until all ran again.
q "UPDATE events SET processed = false WHERE event_type LIKE 'buddy.%'" >/dev/null
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 20 || die "replay not processed"
assert_eq "$(q "SELECT count(*) FROM events WHERE attempts = 1 AND last_error IS NULL")" 10 "every event ran again, once, and succeeded"
assert_eq "$(snapshot)" "$before" "replay of every event type: no duplicate, nothing changed"

# The match's creation alone again, after its end: it stays ended.
q "UPDATE events SET processed = false WHERE event_type = 'buddy.match.created'" >/dev/null
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 10 || die "created replay not processed"
assert_eq "$(q "SELECT status || '|' || end_reason FROM buddy_matches")" "ended|completed" "replayed created does not re-activate the ended match"

# The same activity and check-in delivered again as new events.
q "INSERT INTO events (event_type, payload) VALUES
  ('buddy.event.logged', '{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": \"hangout\", \"occurredAt\": \"2025-11-03T18:00:00+01:00\"}'),
  ('buddy.checkin.completed', '{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": \"u-p\", \"mood\": 1, \"checkedInAt\": \"2025-11-15T08:00:00Z\"}')"
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 10 || die "second delivery not processed"
assert_eq "$(q "SELECT (SELECT count(*) FROM buddy_events) || ' ' || (SELECT count(*) FROM buddy_checkins) || ' ' || (SELECT mood FROM buddy_checkins WHERE checkin_id = 'c-1') || ' ' || (SELECT count(*) FROM buddy_system_events)")" \
	"2 2 3 12" "second delivery: raw rows added, no domain duplicate, first version kept"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 0 "still no dead letter"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
