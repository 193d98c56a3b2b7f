#!/usr/bin/env bash
# 5,000 mixed buddy events (500 matches, then activities, attendance, skill
# shares, check-ins, feedback, milestones and ends), 1 % malformed: every
# valid one lands (those whose match is still in another worker's batch
# after a retry), every malformed one is dead-lettered with its field-level
# error, and nothing else is.
. "$(dirname "$0")/lib.sh"
setup_db
conf "$T/a.conf" 'packs = ["buddy"];' 'max_attempts = 20;' \
	'backoff = { base_ms = 50; factor = 2.0; cap_ms = 200; };'
"$BIN" -c "$T/a.conf" migrate >"$T/migrate-buddy.out" 2>&1 || die "migrate buddy: $(cat "$T/migrate-buddy.out")"

# The events to send, with the error each malformed one must get (want).
q "CREATE TABLE bulk_gen (i int PRIMARY KEY, event_type text NOT NULL, payload jsonb NOT NULL, want text);
INSERT INTO bulk_gen
SELECT i, 'buddy.match.created', jsonb_build_object('matchId', 'm-' || i, 'participantId', 'p-' || i,
       'buddyId', 'b-' || i, 'matchedAt', '2025-11-01T09:00:00Z', 'programId', 'prog-' || i % 3)
  FROM generate_series(1, 500) i;
INSERT INTO bulk_gen
SELECT i, t, p, NULL FROM (
  SELECT i, m, u,
    CASE WHEN i > 4900 THEN 'buddy.match.ended'
         ELSE (ARRAY['buddy.event.logged', 'buddy.event.attended', 'buddy.skill_share.completed',
                     'buddy.checkin.completed', 'buddy.feedback.submitted', 'buddy.milestone.reached'])[i % 6 + 1]
    END AS t,
    CASE WHEN i > 4900 THEN jsonb_build_object('matchId', 'm-' || (i - 4900), 'endedAt', '2026-02-01T00:00:00Z', 'reason', 'completed')
         WHEN i % 6 = 0 THEN jsonb_build_object('activityId', 'a-' || i, 'matchId', m, 'activityType', 'hangout',
                                                'occurredAt', '2025-11-05T18:00:00+01:00', 'durationMinutes', i % 240)
         WHEN i % 6 = 1 THEN jsonb_build_object('programEventId', 'pe-' || i % 40, 'userId', u, 'attendedAt', '2025-11-06T10:00:00Z')
         WHEN i % 6 = 2 THEN jsonb_build_object('sessionId', 's-' || i, 'teacherId', 'b-' || i % 500, 'learnerId', u,
                                                'skill', 'cooking', 'durationMinutes', 30, 'completedAt', '2025-11-07T20:00:00Z')
         WHEN i % 6 = 3 THEN jsonb_build_object('checkinId', 'c-' || i, 'matchId', m, 'userId', u, 'mood', i % 5 + 1,
                                                'checkedInAt', '2025-11-08T08:00:00.250Z')
         WHEN i % 6 = 4 THEN jsonb_build_object('feedbackId', 'f-' || i, 'matchId', m, 'fromUserId', u, 'rating', i % 5 + 1,
                                                'comment', 'ok', 'submittedAt', '2025-11-09T12:00:00Z')
         ELSE jsonb_build_object('milestoneId', 'ms-' || i, 'userId', u, 'milestone', 'first_month', 'reachedAt', '2025-12-01T00:00:00Z')
    END AS p
  FROM (SELECT i, 'm-' || (i % 500 + 1) AS m, 'p-' || (i % 500 + 1) AS u FROM generate_series(501, 5000) i) s) x;
-- 1 %: about every 90th of the 4,500 mixed events (shifted so that all
-- types are hit), one rule broken per type.
UPDATE bulk_gen SET
  payload = CASE event_type
    WHEN 'buddy.event.logged' THEN payload || '{\"durationMinutes\": -1}'
    WHEN 'buddy.event.attended' THEN payload || '{\"attendedAt\": \"not a date\"}'
    WHEN 'buddy.skill_share.completed' THEN payload - 'teacherId'
    WHEN 'buddy.checkin.completed' THEN payload || '{\"mood\": 0}'
    WHEN 'buddy.feedback.submitted' THEN payload || '{\"rating\": 9}'
    WHEN 'buddy.milestone.reached' THEN payload || '{\"userId\": \"\"}'
    WHEN 'buddy.match.ended' THEN payload || '{\"reason\": 42}' END,
  want = event_type || ': ' || CASE event_type
    WHEN 'buddy.event.logged' THEN 'durationMinutes must be an integer 0..525600, got -1'
    WHEN 'buddy.event.attended' THEN 'attendedAt must be an ISO 8601 timestamp with a time zone, got \"not a date\"'
    WHEN 'buddy.skill_share.completed' THEN 'teacherId is required'
    WHEN 'buddy.checkin.completed' THEN 'mood must be an integer 1..5, got 0'
    WHEN 'buddy.feedback.submitted' THEN 'rating must be an integer 1..5, got 9'
    WHEN 'buddy.milestone.reached' THEN 'userId must not be empty'
    WHEN 'buddy.match.ended' THEN 'reason must be a string, got number' END
WHERE i IN (SELECT 501 + 90 * k + k % 6 FROM generate_series(0, 49) k)" >/dev/null
assert_eq "$(q "SELECT count(*) || ' ' || count(want) || ' ' || count(DISTINCT event_type) || ' ' || count(DISTINCT event_type) FILTER (WHERE want IS NOT NULL) FROM bulk_gen")" \
	"5000 50 8 7" "5,000 events of all 8 types, 50 malformed across 7 types"

start_daemon a "$T/a.conf"
wait_log a 'worker started' 10 || die "daemon did not start"
t0=$(date +%s%3N)
q "INSERT INTO events (event_type, payload, idempotency_key, created_at)
   SELECT event_type, payload, 'bulk-' || i, now() - (5001 - i) * interval '1 millisecond' FROM bulk_gen" >/dev/null
wait_for "SELECT count(*) FROM events WHERE NOT processed" 0 45 || die "not drained"
log "5,000 buddy events handled in $(($(date +%s%3N) - t0)) ms; $(q "SELECT count(*) FROM events WHERE attempts > 1") retried while their match was in another batch"

# Join each sent event to its outcome.
out="FROM bulk_gen g JOIN events e ON e.idempotency_key = 'bulk-' || g.i
     LEFT JOIN event_dead_letters d ON d.event_id = e.id
     LEFT JOIN buddy_system_events s ON s.event_id = e.id"
assert_eq "$(q "SELECT count(*) $out WHERE g.want IS NOT NULL AND d.error_message = g.want AND d.attempts = 1 AND s.id IS NULL")" 50 \
	"every malformed event dead-lettered at once with its field-level error, nothing written"
assert_eq "$(q "SELECT count(*) FROM event_dead_letters")" 50 "no other dead letter"
assert_eq "$(q "SELECT count(*) $out WHERE g.want IS NULL AND d.id IS NULL AND s.event_type = g.event_type AND s.payload = g.payload AND e.last_error IS NULL")" 4950 \
	"every valid event landed raw, with no error left"
assert_eq "$(q "SELECT concat_ws(' ', (SELECT count(*) FROM buddy_matches),
	(SELECT count(*) FROM buddy_matches WHERE status = 'ended'),
	(SELECT count(*) FROM buddy_events), (SELECT count(*) FROM buddy_checkins), (SELECT count(*) FROM buddy_feedback))")" \
	"$(q "SELECT concat_ws(' ', count(*) FILTER (WHERE event_type = 'buddy.match.created'),
	count(*) FILTER (WHERE event_type = 'buddy.match.ended'),
	count(*) FILTER (WHERE event_type = 'buddy.event.logged'), count(*) FILTER (WHERE event_type = 'buddy.checkin.completed'),
	count(*) FILTER (WHERE event_type = 'buddy.feedback.submitted')) FROM bulk_gen WHERE want IS NULL")" \
	"domain rows: one per valid match, end, activity, check-in and feedback"
assert_eq "$(q "SELECT count(*) FROM bulk_gen g JOIN buddy_checkins c ON c.checkin_id = g.payload->>'checkinId'
	WHERE c.match_id = g.payload->>'matchId' AND c.mood = (g.payload->>'mood')::int AND c.checked_in_at = (g.payload->>'checkedInAt')::timestamptz")" \
	"$(q "SELECT count(*) FROM bulk_gen WHERE event_type = 'buddy.checkin.completed' AND want IS NULL")" "check-in columns as sent"
stop_daemon $DPID; assert_eq $? 0 "exit 0"
finish
