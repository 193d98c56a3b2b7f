/*
 * buddy.c -- the buddy pack: Buddy System events into the buddy_* tables.
 *
 * Every event type is one row of a static table (struct buddy_type): the
 * payload fields it takes, the field that names its primary user, the
 * match it refers to, and the statement that writes its domain row. All
 * eight handlers then run the same steps, in this order:
 *
 *   1. validate the whole payload (no statement runs before this), FAIL on
 *      the first violation with "<type>: <field> <problem>";
 *   2. if the event refers to a match, look it up: RETRY while it does not
 *      exist (its buddy.match.created may still be on its way);
 *   3. insert the raw row into buddy_system_events (one per event id);
 *   4. run the domain statement.
 *
 * Idempotency comes from the keys: the raw row is unique per event id, the
 * domain rows per the Buddy System's own ids (matchId, activityId,
 * checkinId, feedbackId), and every write is ON CONFLICT DO NOTHING or, for
 * buddy.match.ended, an UPDATE of active matches only, so neither a replay
 * nor a second delivery duplicates a row or moves a match backwards.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "handlers/buddy/buddy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct migration buddy_migrations[];

enum field_kind {
	FIELD_ID,      /* non-empty string of at most BUDDY_ID_MAX characters */
	FIELD_LABEL,   /* non-empty string (activityType, reason, skill, ...) */
	FIELD_TEXT,    /* any string, "" included (notes, comment) */
	FIELD_TIME,    /* ISO 8601 date and time with a time zone */
	FIELD_SCORE,   /* integer 1..5 (mood, rating) */
	FIELD_MINUTES, /* integer 0..BUDDY_MINUTES_MAX */
};

struct field {
	const char *name; /* camelCase, as the Buddy System sends it */
	enum field_kind kind;
	bool required; /* optional fields may be absent or null */
};

#define BUDDY_FIELDS_MAX 6

struct buddy_type {
	const char *event_type;
	struct field fields[BUDDY_FIELDS_MAX + 1]; /* ends with name == NULL */
	const char *user_field;                    /* fills buddy_system_events.user_id, or NULL */
	const char *match_field; /* names a match that must exist first, or NULL */
	/* Writes the domain row: $1 is the event's id, $2... the fields in the
	 * order above, as text (NULL when absent). NULL: the raw row is all. */
	const char *sql;
};

/* The validated values of one event, as the text parameters of its SQL. */
struct parsed {
	const char
	    *values[BUDDY_FIELDS_MAX]; /* borrowed from the payload or numbuf; NULL = absent */
	char numbuf[BUDDY_FIELDS_MAX][24];
	const char *correlation_id; /* borrowed from the metadata, or NULL */
};

static const struct buddy_type match_created = {
	"buddy.match.created",
	{
	    { "matchId", FIELD_ID, true },
	    { "participantId", FIELD_ID, true },
	    { "buddyId", FIELD_ID, true },
	    { "matchedAt", FIELD_TIME, true },
	    { "programId", FIELD_ID, false },
	},
	"participantId",
	NULL,
	/* DO NOTHING: a replayed created never re-activates an ended match. */
	"INSERT INTO buddy_matches (match_id, participant_id, buddy_id, matched_at, program_id,"
	" created_event_id) VALUES ($2, $3, $4, $5::timestamptz, $6, $1::uuid)"
	" ON CONFLICT (match_id) DO NOTHING",
};

static const struct buddy_type match_ended = {
	"buddy.match.ended",
	{
	    { "matchId", FIELD_ID, true },
	    { "endedAt", FIELD_TIME, true },
	    { "reason", FIELD_LABEL, true },
	},
	NULL,
	"matchId",
	/* Active matches only: the first end wins, a replay changes nothing. */
	"UPDATE buddy_matches SET status = 'ended', ended_at = $3::timestamptz, end_reason = $4,"
	" ended_event_id = $1::uuid, updated_at = now()"
	" WHERE match_id = $2 AND status = 'active'",
};

static const struct buddy_type event_logged = {
	"buddy.event.logged",
	{
	    { "activityId", FIELD_ID, true },
	    { "matchId", FIELD_ID, true },
	    { "activityType", FIELD_LABEL, true },
	    { "occurredAt", FIELD_TIME, true },
	    { "durationMinutes", FIELD_MINUTES, false },
	    { "notes", FIELD_TEXT, false },
	},
	NULL,
	"matchId",
	"INSERT INTO buddy_events (activity_id, match_id, activity_type, occurred_at,"
	" duration_minutes, notes, event_id)"
	" VALUES ($2, $3, $4, $5::timestamptz, $6::integer, $7, $1::uuid)"
	" ON CONFLICT (activity_id) DO NOTHING",
};

static const struct buddy_type event_attended = {
	"buddy.event.attended",
	{
	    { "programEventId", FIELD_ID, true },
	    { "userId", FIELD_ID, true },
	    { "attendedAt", FIELD_TIME, true },
	},
	"userId",
	NULL,
	NULL,
};

static const struct buddy_type skill_share_completed = {
	"buddy.skill_share.completed",
	{
	    { "sessionId", FIELD_ID, true },
	    { "teacherId", FIELD_ID, true },
	    { "learnerId", FIELD_ID, true },
	    { "skill", FIELD_LABEL, true },
	    { "durationMinutes", FIELD_MINUTES, true },
	    { "completedAt", FIELD_TIME, true },
	},
	"teacherId",
	NULL,
	NULL,
};

static const struct buddy_type checkin_completed = {
	"buddy.checkin.completed",
	{
	    { "checkinId", FIELD_ID, true },
	    { "matchId", FIELD_ID, true },
	    { "userId", FIELD_ID, true },
	    { "mood", FIELD_SCORE, true },
	    { "checkedInAt", FIELD_TIME, true },
	    { "notes", FIELD_TEXT, false },
	},
	"userId",
	"matchId",
	"INSERT INTO buddy_checkins (checkin_id, match_id, user_id, mood, checked_in_at, notes,"
	" event_id) VALUES ($2, $3, $4, $5::smallint, $6::timestamptz, $7, $1::uuid)"
	" ON CONFLICT (checkin_id) DO NOTHING",
};

static const struct buddy_type feedback_submitted = {
	"buddy.feedback.submitted",
	{
	    { "feedbackId", FIELD_ID, true },
	    { "matchId", FIELD_ID, true },
	    { "fromUserId", FIELD_ID, true },
	    { "rating", FIELD_SCORE, true },
	    { "comment", FIELD_TEXT, false },
	    { "submittedAt", FIELD_TIME, true },
	},
	"fromUserId",
	"matchId",
	"INSERT INTO buddy_feedback (feedback_id, match_id, from_user_id, rating, comment,"
	" submitted_at, event_id) VALUES ($2, $3, $4, $5::smallint, $6, $7::timestamptz, $1::uuid)"
	" ON CONFLICT (feedback_id) DO NOTHING",
};

static const struct buddy_type milestone_reached = {
	"buddy.milestone.reached",
	{
	    { "milestoneId", FIELD_ID, true },
	    { "userId", FIELD_ID, true },
	    { "milestone", FIELD_LABEL, true },
	    { "reachedAt", FIELD_TIME, true },
	},
	"userId",
	NULL,
	NULL,
};

static const struct buddy_type *const buddy_types[] = {
	&match_created,      &match_ended,           &event_logged,
	&event_attended,     &skill_share_completed, &checkin_completed,
	&feedback_submitted, &milestone_reached,     NULL,
};

/* ---- validation ---------------------------------------------------------- */

/* The value as JSON, ASCII only (so that cutting it can never split a
 * UTF-8 sequence: the message lands in a text column) and at most 40
 * characters. */
static void render(const json_t *v, char *buf, size_t len)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);

	if (!s)
		snprintf(buf, len, "%s", handler_json_type(v));
	else if (strlen(s) > 40)
		snprintf(buf, len, "%.37s...", s);
	else
		snprintf(buf, len, "%s", s);
	free(s);
}

/* Format "<event type>: <message>" into err; returns false for `return bad(...)`. */
static bool bad(char *err, size_t errlen, const struct buddy_type *t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool bad(char *err, size_t errlen, const struct buddy_type *t, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s: ", t->event_type);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

/* Read exactly n digits at *p; -1 if they are not all digits. */
static int digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

static int days_in_month(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/*
 * An ISO 8601 date and time with a time zone, in the extended format the
 * Buddy System (JavaScript's toISOString) sends and PostgreSQL reads
 * whatever its DateStyle: YYYY-MM-DDTHH:MM[:SS[.fraction]] then Z, +HH,
 * +HHMM or +HH:MM (or -). A time without a zone is refused: it would be
 * read in the server's time zone.
 */
static bool iso8601_ok(const char *s)
{
	const char *p = s;
	int y, mo, d, h, mi, sec = 0, zh, zm = 0;

	y = digits(&p, 4);
	if (y < 1 || *p++ != '-')
		return false;
	mo = digits(&p, 2);
	if (mo < 1 || mo > 12 || *p++ != '-')
		return false;
	d = digits(&p, 2);
	if (d < 1 || d > days_in_month(y, mo) || *p++ != 'T')
		return false;
	h = digits(&p, 2);
	if (h < 0 || h > 23 || *p++ != ':')
		return false;
	mi = digits(&p, 2);
	if (mi < 0 || mi > 59)
		return false;
	if (*p == ':') {
		p++;
		sec = digits(&p, 2);
		if (sec < 0 || sec > 59)
			return false;
		if (*p == '.') {
			int n = 0;

			for (p++; *p >= '0' && *p <= '9'; p++)
				n++;
			if (n < 1 || n > 9)
				return false;
		}
	}
	if (*p == 'Z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return false;
	p++;
	zh = digits(&p, 2);
	if (zh < 0 || zh > 14)
		return false;
	if (*p == ':')
		p++;
	if (*p) {
		zm = digits(&p, 2);
		if (zm < 0 || zm > 59)
			return false;
	}
	return *p == '\0';
}

/* 8-4-4-4-12 hexadecimal digits. */
static bool uuid_ok(const char *s)
{
	for (int i = 0; i < 36; i++) {
		bool hyphen = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];

		if (hyphen ? c != '-'
		           : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		               (c >= 'A' && c <= 'F')))
			return false;
	}
	return s[36] == '\0';
}

/* Check one present, non-null value; on success set *out to its text. */
static bool check_value(const struct buddy_type *t, const struct field *f, const json_t *v,
                        char numbuf[24], const char **out, char *err, size_t errlen)
{
	char got[48];
	json_int_t n;
	const char *s;

	switch (f->kind) {
	case FIELD_ID:
	case FIELD_LABEL:
	case FIELD_TEXT:
		if (!json_is_string(v))
			return bad(err, errlen, t, "%s must be a string, got %s", f->name,
			           handler_json_type(v));
		s = json_string_value(v);
		if (f->kind != FIELD_TEXT && !*s)
			return bad(err, errlen, t, "%s must not be empty", f->name);
		if (f->kind == FIELD_ID && handler_text_length(s) > BUDDY_ID_MAX)
			return bad(err, errlen, t, "%s must be at most %d characters, got %zu",
			           f->name, BUDDY_ID_MAX, handler_text_length(s));
		*out = s;
		return true;
	case FIELD_TIME:
		if (!json_is_string(v) || !iso8601_ok(json_string_value(v))) {
			render(v, got, sizeof(got));
			return bad(err, errlen, t,
			           "%s must be an ISO 8601 timestamp with a time zone, got %s",
			           f->name, got);
		}
		*out = json_string_value(v);
		return true;
	case FIELD_SCORE:
	case FIELD_MINUTES:
		n = json_is_integer(v) ? json_integer_value(v) : -1;
		if (f->kind == FIELD_SCORE ? n < 1 || n > 5 : n < 0 || n > BUDDY_MINUTES_MAX) {
			render(v, got, sizeof(got));
			if (f->kind == FIELD_SCORE)
				return bad(err, errlen, t, "%s must be an integer 1..5, got %s",
				           f->name, got);
			return bad(err, errlen, t, "%s must be an integer 0..%d, got %s", f->name,
			           BUDDY_MINUTES_MAX, got);
		}
		snprintf(numbuf, 24, "%lld", (long long)n);
		*out = numbuf;
		return true;
	}
	return bad(err, errlen, t, "%s has an unknown kind", f->name);
}

/* Validate `ev` as an event of type `t` and collect its values. */
static bool parse_event(const struct buddy_type *t, const struct event *ev, struct parsed *p,
                        char *err, size_t errlen)
{
	const json_t *corr;
	char got[48];

	memset(p, 0, sizeof(*p));
	if (!json_is_object(ev->payload))
		return bad(err, errlen, t, "payload must be a JSON object, got %s",
		           handler_json_type(ev->payload));
	for (int i = 0; t->fields[i].name; i++) {
		const struct field *f = &t->fields[i];
		const json_t *v = json_object_get(ev->payload, f->name);

		if (!v || json_is_null(v)) {
			if (f->required)
				return bad(err, errlen, t, "%s is required", f->name);
			continue;
		}
		if (!check_value(t, f, v, p->numbuf[i], &p->values[i], err, errlen))
			return false;
	}
	corr = json_is_object(ev->metadata) ? json_object_get(ev->metadata, "correlationId") : NULL;
	if (corr && !json_is_null(corr)) {
		if (!json_is_string(corr) || !uuid_ok(json_string_value(corr))) {
			render(corr, got, sizeof(got));
			return bad(err, errlen, t, "metadata.correlationId must be a UUID, got %s",
			           got);
		}
		p->correlation_id = json_string_value(corr);
	}
	return true;
}

static const struct buddy_type *find_type(const char *event_type)
{
	for (const struct buddy_type *const *t = buddy_types; *t; t++)
		if (strcmp((*t)->event_type, event_type) == 0)
			return *t;
	return NULL;
}

bool buddy_validate(const struct event *ev, char *err, size_t errlen)
{
	const struct buddy_type *t = find_type(ev->event_type);
	struct parsed p;

	if (!t) {
		snprintf(err, errlen, "%s: not a buddy event type", ev->event_type);
		return false;
	}
	return parse_event(t, ev, &p, err, errlen);
}

/* ---- the handlers ------------------------------------------------------- */

static const char *value_of(const struct buddy_type *t, const struct parsed *p, const char *name)
{
	for (int i = 0; name && t->fields[i].name; i++)
		if (strcmp(t->fields[i].name, name) == 0)
			return p->values[i];
	return NULL;
}

/* 1 when the match exists (committed, or written earlier in this batch), 0
 * when not, -1 when the lookup failed (handler_exec has set the message). */
static int match_exists(struct handler_ctx *ctx, const char *match_id)
{
	const char *params[1] = { match_id };
	PGresult *res =
	    handler_exec(ctx, "SELECT 1 FROM buddy_matches WHERE match_id = $1", 1, params);
	int found;

	if (!res)
		return -1;
	found = PQntuples(res) > 0;
	PQclear(res);
	return found;
}

/* Steps 1-4 of the file comment for one event. Costs two or three
 * statements on the batch connection. */
static enum handler_result buddy_handle(struct handler_ctx *ctx, const struct event *ev,
                                        const struct buddy_type *t)
{
	struct parsed p;
	char err[256];
	const char *params[BUDDY_FIELDS_MAX + 1];
	PGresult *res;
	int nfields = 0;

	if (!parse_event(t, ev, &p, err, sizeof(err)))
		return handler_error(ctx, "%s", err);

	if (t->match_field) {
		const char *match_id = value_of(t, &p, t->match_field);
		int found = match_exists(ctx, match_id);

		if (found < 0)
			return HANDLER_RETRY;
		if (!found)
			return handler_retry(ctx, "%s: %s %s does not exist yet", t->event_type,
			                     t->match_field, match_id);
	}

	const char *raw[6] = { ev->id,         t->event_type,    value_of(t, &p, t->user_field),
		               ev->created_at, ev->payload_text, p.correlation_id };
	res = handler_exec(ctx,
	                   "INSERT INTO buddy_system_events (event_id, event_type, user_id,"
	                   " timestamp, payload, correlation_id, processed_at)"
	                   " VALUES ($1::uuid, $2, $3, $4::timestamptz, $5::jsonb, $6::uuid, now())"
	                   " ON CONFLICT (event_id) DO NOTHING",
	                   6, raw);
	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	if (!t->sql)
		return HANDLER_OK;

	params[0] = ev->id;
	for (; t->fields[nfields].name; nfields++)
		params[nfields + 1] = p.values[nfields];
	res = handler_exec(ctx, t->sql, nfields + 1, params);
	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

/* One named function per type, so that logs and dead letters name it. */
#define BUDDY_HANDLER(fn, type)                                                                    \
	static enum handler_result fn(struct handler_ctx *ctx, const struct event *ev)             \
	{                                                                                          \
		return buddy_handle(ctx, ev, &(type));                                             \
	}

BUDDY_HANDLER(buddy_match_created, match_created)
BUDDY_HANDLER(buddy_match_ended, match_ended)
BUDDY_HANDLER(buddy_event_logged, event_logged)
BUDDY_HANDLER(buddy_event_attended, event_attended)
BUDDY_HANDLER(buddy_skill_share_completed, skill_share_completed)
BUDDY_HANDLER(buddy_checkin_completed, checkin_completed)
BUDDY_HANDLER(buddy_feedback_submitted, feedback_submitted)
BUDDY_HANDLER(buddy_milestone_reached, milestone_reached)

/* To route a new buddy event type: add its struct buddy_type above (and to
 * buddy_types[]), a BUDDY_HANDLER line, and a row here, sorted by type. */
static const struct handler_entry buddy_handlers[] = {
	HANDLER("buddy.checkin.completed", buddy_checkin_completed, HANDLER_F_JSON,
	        "stores a check-in (mood 1..5) of an existing match in buddy_checkins"),
	HANDLER("buddy.event.attended", buddy_event_attended, HANDLER_F_JSON,
	        "records program-event attendance in buddy_system_events"),
	HANDLER("buddy.event.logged", buddy_event_logged, HANDLER_F_JSON,
	        "stores an activity of an existing match in buddy_events"),
	HANDLER("buddy.feedback.submitted", buddy_feedback_submitted, HANDLER_F_JSON,
	        "stores a rating (1..5) of an existing match in buddy_feedback"),
	HANDLER("buddy.match.created", buddy_match_created, HANDLER_F_JSON,
	        "creates an active match in buddy_matches"),
	HANDLER("buddy.match.ended", buddy_match_ended, HANDLER_F_JSON,
	        "ends an active match in buddy_matches, with its reason"),
	HANDLER("buddy.milestone.reached", buddy_milestone_reached, HANDLER_F_JSON,
	        "records a user's milestone in buddy_system_events"),
	HANDLER("buddy.skill_share.completed", buddy_skill_share_completed, HANDLER_F_JSON,
	        "records a skill-share session in buddy_system_events"),
	{ NULL, NULL, 0, NULL, NULL },
};

const struct handler_pack buddy_pack = {
	"buddy",
	"Buddy System events into buddy_system_events and the buddy_* domain tables",
	buddy_handlers,
	buddy_migrations,
};
