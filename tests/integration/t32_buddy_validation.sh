#!/usr/bin/env bash
# The buddy pack is off until enabled (no tables, its types unrouted, `run`
# refuses while its migration is pending); once on, a payload that breaks
# a rule of each class is dead-lettered on its first attempt with the
# field-level error, writing nothing, while a valid event in the same batch
# lands.
. "$(dirname "$0")/lib.sh"
setup_db # core + test pack only

# ---- not enabled -------------------------------------------------------------
assert_eq "$(q "SELECT to_regclass('buddy_matches') IS NULL AND to_regclass('buddy_system_events') IS NULL")" t "no buddy tables before the pack is enabled"
assert_eq "$(q "SELECT count(*) FROM pgeventd_schema_migrations WHERE pack = 'buddy'")" 0 "no buddy migration recorded"
U=$(q "INSERT INTO events (event_type, payload) VALUES ('buddy.milestone.reached', '{}') RETURNING id")
"$BIN" -c "$T/migrate.conf" run --once >"$T/off.log" 2>&1 || die "run --once without the pack: exit $?"
assert_eq "$(q "SELECT error_message FROM event_dead_letters WHERE event_id = '$U'")" \
	"no handler registered for event type buddy.milestone.reached" "buddy type not routed while the pack is off"

conf "$T/a.conf" 'packs = ["buddy"];'
rc=0; "$BIN" -c "$T/a.conf" run --once >"$T/pending.log" 2>&1 || rc=$?
assert_eq "$rc" 75 "run refuses while the buddy migration is pending (exit 75)"
assert_match "$(cat "$T/pending.log")" 'migrations pending.*buddy/0001_buddy.sql' "and names it"
"$BIN" -c "$T/a.conf" migrate >"$T/migrate-buddy.out" 2>&1 || die "migrate buddy: $(cat "$T/migrate-buddy.out")"
assert_eq "$(q "SELECT name FROM pgeventd_schema_migrations WHERE pack = 'buddy'")" 0001_buddy.sql "migrate applies the pack's migration once enabled"

# ---- one malformed payload per rule class --------------------------------------
# Each line: event type | payload | the exact error_message expected.
cat >"$T/cases" <<'CASES'
buddy.match.created|[1, 2]|buddy.match.created: payload must be a JSON object, got array
buddy.match.created|{"matchId": "m-1", "buddyId": "u-2", "matchedAt": "2025-11-01T09:00:00Z"}|buddy.match.created: participantId is required
buddy.checkin.completed|{"checkinId": "c-1", "matchId": "m-1", "userId": "u-1", "mood": null, "checkedInAt": "2025-11-08T08:00:00Z"}|buddy.checkin.completed: mood is required
buddy.match.ended|{"matchId": 42, "endedAt": "2026-02-01T17:30:00Z", "reason": "completed"}|buddy.match.ended: matchId must be a string, got number
buddy.event.logged|{"activityId": "a-1", "matchId": "m-1", "activityType": "hangout", "occurredAt": "2025-11-05T18:00:00Z", "notes": {"x": 1}}|buddy.event.logged: notes must be a string, got object
buddy.event.attended|{"programEventId": "", "userId": "u-1", "attendedAt": "2025-11-06T10:00:00Z"}|buddy.event.attended: programEventId must not be empty
buddy.skill_share.completed|{"sessionId": "s-1", "teacherId": "u-2", "learnerId": "u-1", "skill": "", "durationMinutes": 30, "completedAt": "2025-11-07T20:00:00Z"}|buddy.skill_share.completed: skill must not be empty
buddy.milestone.reached|{"milestoneId": "LONG_ID", "userId": "u-1", "milestone": "m", "reachedAt": "2025-12-01T00:00:00Z"}|buddy.milestone.reached: milestoneId must be at most 100 characters, got 101
buddy.feedback.submitted|{"feedbackId": "f-1", "matchId": "m-1", "fromUserId": "u-1", "rating": 9, "submittedAt": "2025-11-09T12:00:00Z"}|buddy.feedback.submitted: rating must be an integer 1..5, got 9
buddy.checkin.completed|{"checkinId": "c-1", "matchId": "m-1", "userId": "u-1", "mood": 2.5, "checkedInAt": "2025-11-08T08:00:00Z"}|buddy.checkin.completed: mood must be an integer 1..5, got 2.5
buddy.skill_share.completed|{"sessionId": "s-1", "teacherId": "u-2", "learnerId": "u-1", "skill": "x", "durationMinutes": -1, "completedAt": "2025-11-07T20:00:00Z"}|buddy.skill_share.completed: durationMinutes must be an integer 0..525600, got -1
buddy.match.created|{"matchId": "m-1", "participantId": "u-1", "buddyId": "u-2", "matchedAt": "2025-02-30T09:00:00Z"}|buddy.match.created: matchedAt must be an ISO 8601 timestamp with a time zone, got "2025-02-30T09:00:00Z"
buddy.event.attended|{"programEventId": "pe-1", "userId": "u-1", "attendedAt": "2025-11-06 10:00:00"}|buddy.event.attended: attendedAt must be an ISO 8601 timestamp with a time zone, got "2025-11-06 10:00:00"
buddy.feedback.submitted|{"feedbackId": "f-1", "matchId": "m-1", "fromUserId": "u-1", "rating": 4, "submittedAt": 1762000000}|buddy.feedback.submitted: submittedAt must be an ISO 8601 timestamp with a time zone, got 1762000000
CASES
sed -i "s/LONG_ID/$(printf 'x%.0s' $(seq 1 101))/" "$T/cases" # 101 characters
n=0
while IFS='|' read -r type payload _; do
	n=$((n + 1))
	q "INSERT INTO events (event_type, payload, idempotency_key, created_at)
	   VALUES ('$type', \$p\$$payload\$p\$, 'case-$n', clock_timestamp())" >/dev/null
done <"$T/cases"
# A bad metadata.correlationId, and a valid event in the same batch.
q "INSERT INTO events (event_type, payload, metadata, idempotency_key) VALUES ('buddy.event.attended',
   '{\"programEventId\": \"pe-1\", \"userId\": \"u-1\", \"attendedAt\": \"2025-11-06T10:00:00Z\"}', '{\"correlationId\": \"not-a-uuid\"}', 'case-corr')" >/dev/null
OK=$(q "INSERT INTO events (event_type, payload) VALUES ('buddy.event.attended',
   '{\"programEventId\": \"pe-1\", \"userId\": \"u-1\", \"attendedAt\": \"2025-11-06T10:00:00Z\"}') RETURNING id")
"$BIN" -c "$T/a.conf" run --once >"$T/a.log" 2>&1 || die "run --once: exit $?"

n=0
while IFS='|' read -r type payload want; do
	n=$((n + 1))
	got=$(q "SELECT concat_ws('|', d.event_type, d.attempts, d.retry_count, d.handler, d.error_message)
	         FROM event_dead_letters d JOIN events e ON e.id = d.event_id WHERE e.idempotency_key = 'case-$n'")
	h=buddy_$(printf '%s' "${type#buddy.}" | tr . _)
	assert_eq "$got" "$type|1|0|$h|$want" "case $n: ${want#*: }"
done <"$T/cases"
assert_eq "$(q "SELECT d.error_message FROM event_dead_letters d JOIN events e ON e.id = d.event_id WHERE e.idempotency_key = 'case-corr'")" \
	'buddy.event.attended: metadata.correlationId must be a UUID, got "not-a-uuid"' "bad metadata.correlationId"
assert_eq "$(q "SELECT last_error FROM events WHERE idempotency_key = 'case-9'")" \
	"buddy.feedback.submitted: rating must be an integer 1..5, got 9" "events.last_error holds the same message"
assert_eq "$(q "SELECT string_agg(event_id::text, ',') FROM buddy_system_events")" "$OK" "only the valid event was written"
assert_eq "$(q "SELECT (SELECT count(*) FROM buddy_matches) + (SELECT count(*) FROM buddy_events) + (SELECT count(*) FROM buddy_checkins) + (SELECT count(*) FROM buddy_feedback)")" 0 \
	"no domain row from a malformed event"
assert_match "$(grep 'case\|rating must be' "$T/a.log" | head -n 1)" 'outcome=dead_letter error="buddy.feedback.submitted: rating must be an integer 1..5, got 9"' "dead letter logged with the field error"
finish
