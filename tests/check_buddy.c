/*
 * check_buddy.c -- the buddy pack: one test per validation rule class
 * (pure, on buddy_validate) and, when a test PostgreSQL is exported
 * (PGEVENTD_TEST_PG=1, as scripts/test does), one test per event type that
 * runs its handler in a transaction and reads back the rows it wrote.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers/buddy/buddy.h"
#include "handlers/registry.h"
#include "src/conf.h"
#include "src/db.h"
#include "src/dispatch.h"
#include "src/log.h"
#include "src/migrate.h"
#include "tests/check_unit.h"

/* ---- validation ---------------------------------------------------------- */

/* Validate `payload` (JSON text) as `type`; returns the error, "" when valid. */
static const char *validate_with(const char *type, const char *payload, const char *metadata)
{
	static char err[512];
	json_error_t jerr;
	json_t *p = json_loads(payload, JSON_DECODE_ANY, &jerr);
	json_t *m = metadata ? json_loads(metadata, JSON_DECODE_ANY, &jerr) : NULL;
	struct event ev = { .id = "00000000-0000-4000-8000-000000000000",
		            .event_type = type,
		            .payload = p,
		            .payload_text = payload,
		            .metadata = m,
		            .created_at = "2025-11-14 12:00:00+00",
		            .attempt = 1 };

	ck_assert_msg(p != NULL, "test payload is not JSON: %s", payload);
	err[0] = '\0';
	if (buddy_validate(&ev, err, sizeof(err)))
		ck_assert_str_eq(err, "");
	else
		ck_assert_str_ne(err, "");
	json_decref(p);
	json_decref(m);
	return err;
}

static const char *validate(const char *type, const char *payload)
{
	return validate_with(type, payload, NULL);
}

/* One valid payload per event type (required fields only, then all). */
static const struct sample {
	const char *type;
	const char *minimal;
	const char *full;
} samples[] = {
	{ "buddy.match.created",
	  "{\"matchId\": \"m-1\", \"participantId\": \"u-1\", \"buddyId\": \"u-2\","
	  " \"matchedAt\": \"2025-11-01T09:00:00Z\"}",
	  "{\"matchId\": \"m-1\", \"participantId\": \"u-1\", \"buddyId\": \"u-2\","
	  " \"matchedAt\": \"2025-11-01T09:00:00.123Z\", \"programId\": \"p-7\", \"extra\": 1}" },
	{ "buddy.match.ended",
	  "{\"matchId\": \"m-1\", \"endedAt\": \"2026-02-01T17:30:00+01:00\", \"reason\": "
	  "\"completed\"}",
	  NULL },
	{ "buddy.event.logged",
	  "{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": \"hangout\","
	  " \"occurredAt\": \"2025-11-05T18:00:00Z\"}",
	  "{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": \"workshop\","
	  " \"occurredAt\": \"2025-11-05T18:00:00Z\", \"durationMinutes\": 90, \"notes\": \"\"}" },
	{ "buddy.event.attended",
	  "{\"programEventId\": \"pe-1\", \"userId\": \"u-1\", \"attendedAt\": "
	  "\"2025-11-06T10:00:00Z\"}",
	  NULL },
	{ "buddy.skill_share.completed",
	  "{\"sessionId\": \"s-1\", \"teacherId\": \"u-2\", \"learnerId\": \"u-1\", \"skill\": "
	  "\"cooking\","
	  " \"durationMinutes\": 0, \"completedAt\": \"2025-11-07T20:00:00-05:00\"}",
	  NULL },
	{ "buddy.checkin.completed",
	  "{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": \"u-1\", \"mood\": 4,"
	  " \"checkedInAt\": \"2025-11-08T08:00:00Z\"}",
	  "{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": \"u-1\", \"mood\": 1,"
	  " \"checkedInAt\": \"2025-11-08T08:00:00Z\", \"notes\": null}" },
	{ "buddy.feedback.submitted",
	  "{\"feedbackId\": \"f-1\", \"matchId\": \"m-1\", \"fromUserId\": \"u-1\", \"rating\": 5,"
	  " \"submittedAt\": \"2025-11-09T12:00:00Z\"}",
	  "{\"feedbackId\": \"f-1\", \"matchId\": \"m-1\", \"fromUserId\": \"u-1\", \"rating\": 1,"
	  " \"comment\": \"great buddy \\u00e9\", \"submittedAt\": \"2025-11-09T12:00:00Z\"}" },
	{ "buddy.milestone.reached",
	  "{\"milestoneId\": \"ms-1\", \"userId\": \"u-1\", \"milestone\": \"first_month\","
	  " \"reachedAt\": \"2025-12-01T00:00:00Z\"}",
	  NULL },
};

START_TEST(test_validate_accepts_a_valid_payload_of_every_type)
{
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		ck_assert_str_eq(validate(samples[i].type, samples[i].minimal), "");
		if (samples[i].full)
			ck_assert_str_eq(validate(samples[i].type, samples[i].full), "");
	}
}
END_TEST

START_TEST(test_every_registered_buddy_type_has_rules)
{
	size_t n = 0;

	for (const struct handler_entry *e = buddy_pack.handlers; e->event_type; e++, n++) {
		const char *err = validate(e->event_type, "{}");
		size_t len = strlen(err);

		/* "<type>: <its first field> is required" */
		ck_assert_int_eq(strncmp(err, e->event_type, strlen(e->event_type)), 0);
		ck_assert_str_eq(err + len - strlen(" is required"), " is required");
	}
	ck_assert_uint_eq(n, 8);
	ck_assert_str_eq(validate("buddy.nope", "{}"), "buddy.nope: not a buddy event type");
}
END_TEST

START_TEST(test_validate_rejects_a_payload_that_is_not_an_object)
{
	ck_assert_str_eq(validate("buddy.match.created", "[1, 2]"),
	                 "buddy.match.created: payload must be a JSON object, got array");
	ck_assert_str_eq(validate("buddy.milestone.reached", "\"x\""),
	                 "buddy.milestone.reached: payload must be a JSON object, got string");
}
END_TEST

START_TEST(test_validate_rejects_a_missing_required_field)
{
	ck_assert_str_eq(validate("buddy.match.created",
	                          "{\"matchId\": \"m-1\", \"participantId\": \"u-1\","
	                          " \"matchedAt\": \"2025-11-01T09:00:00Z\"}"),
	                 "buddy.match.created: buddyId is required");
	/* null is absent */
	ck_assert_str_eq(validate("buddy.feedback.submitted",
	                          "{\"feedbackId\": \"f-1\", \"matchId\": \"m-1\", \"fromUserId\": "
	                          "\"u-1\", \"rating\": null, \"submittedAt\": "
	                          "\"2025-11-09T12:00:00Z\"}"),
	                 "buddy.feedback.submitted: rating is required");
	ck_assert_str_eq(validate("buddy.skill_share.completed",
	                          "{\"sessionId\": \"s-1\", \"teacherId\": \"u-2\", \"learnerId\": "
	                          "\"u-1\", \"skill\": \"x\", \"completedAt\": "
	                          "\"2025-11-07T20:00:00Z\"}"),
	                 "buddy.skill_share.completed: durationMinutes is required");
	ck_assert_str_eq(validate("buddy.match.ended", "{}"),
	                 "buddy.match.ended: matchId is required");
}
END_TEST

START_TEST(test_validate_rejects_a_field_of_the_wrong_json_type)
{
	ck_assert_str_eq(validate("buddy.match.created",
	                          "{\"matchId\": 17, \"participantId\": \"u-1\", \"buddyId\": "
	                          "\"u-2\", \"matchedAt\": \"2025-11-01T09:00:00Z\"}"),
	                 "buddy.match.created: matchId must be a string, got number");
	ck_assert_str_eq(validate("buddy.match.ended",
	                          "{\"matchId\": \"m-1\", \"endedAt\": "
	                          "\"2026-02-01T17:30:00Z\", \"reason\": [1]}"),
	                 "buddy.match.ended: reason must be a string, got array");
	ck_assert_str_eq(validate("buddy.checkin.completed",
	                          "{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": "
	                          "\"u-1\", \"mood\": 3, \"checkedInAt\": "
	                          "\"2025-11-08T08:00:00Z\", \"notes\": true}"),
	                 "buddy.checkin.completed: notes must be a string, got boolean");
}
END_TEST

START_TEST(test_validate_rejects_empty_ids_and_labels)
{
	ck_assert_str_eq(
	    validate("buddy.event.attended",
	             "{\"programEventId\": \"pe-1\", \"userId\": \"\", \"attendedAt\": "
	             "\"2025-11-06T10:00:00Z\"}"),
	    "buddy.event.attended: userId must not be empty");
	ck_assert_str_eq(
	    validate("buddy.event.logged",
	             "{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": "
	             "\"\", \"occurredAt\": \"2025-11-05T18:00:00Z\"}"),
	    "buddy.event.logged: activityType must not be empty");
}
END_TEST

START_TEST(test_validate_rejects_an_id_longer_than_100_characters)
{
	char payload[1024], id[512];
	int n;

	/* 100 two-byte characters are fine: the limit is characters, not bytes */
	for (n = 0; n < 100; n++)
		memcpy(id + 2 * n, "\xc3\xa9", 2);
	id[2 * n] = '\0';
	snprintf(payload, sizeof(payload),
	         "{\"milestoneId\": \"%s\", \"userId\": \"u-1\", \"milestone\": \"m\","
	         " \"reachedAt\": \"2025-12-01T00:00:00Z\"}",
	         id);
	ck_assert_str_eq(validate("buddy.milestone.reached", payload), "");
	strcat(id, "x");
	snprintf(payload, sizeof(payload),
	         "{\"milestoneId\": \"%s\", \"userId\": \"u-1\", \"milestone\": \"m\","
	         " \"reachedAt\": \"2025-12-01T00:00:00Z\"}",
	         id);
	ck_assert_str_eq(validate("buddy.milestone.reached", payload),
	                 "buddy.milestone.reached: milestoneId must be at most 100 characters, got "
	                 "101");
}
END_TEST

static const char *feedback_with_rating(const char *rating)
{
	static char payload[256];

	snprintf(payload, sizeof(payload),
	         "{\"feedbackId\": \"f-1\", \"matchId\": \"m-1\", \"fromUserId\": \"u-1\","
	         " \"rating\": %s, \"submittedAt\": \"2025-11-09T12:00:00Z\"}",
	         rating);
	return validate("buddy.feedback.submitted", payload);
}

START_TEST(test_validate_rejects_ratings_and_moods_out_of_range)
{
	ck_assert_str_eq(feedback_with_rating("9"),
	                 "buddy.feedback.submitted: rating must be an integer 1..5, got 9");
	ck_assert_str_eq(feedback_with_rating("0"),
	                 "buddy.feedback.submitted: rating must be an integer 1..5, got 0");
	ck_assert_str_eq(feedback_with_rating("-3"),
	                 "buddy.feedback.submitted: rating must be an integer 1..5, got -3");
	ck_assert_str_eq(feedback_with_rating("4.5"),
	                 "buddy.feedback.submitted: rating must be an integer 1..5, got 4.5");
	ck_assert_str_eq(feedback_with_rating("\"5\""),
	                 "buddy.feedback.submitted: rating must be an integer 1..5, got \"5\"");
	ck_assert_str_eq(feedback_with_rating("5"), "");
	ck_assert_str_eq(validate("buddy.checkin.completed",
	                          "{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": "
	                          "\"u-1\", \"mood\": 6, \"checkedInAt\": "
	                          "\"2025-11-08T08:00:00Z\"}"),
	                 "buddy.checkin.completed: mood must be an integer 1..5, got 6");
}
END_TEST

START_TEST(test_validate_rejects_durations_out_of_range)
{
	ck_assert_str_eq(
	    validate("buddy.event.logged",
	             "{\"activityId\": \"a-1\", \"matchId\": \"m-1\", \"activityType\": "
	             "\"hangout\", \"occurredAt\": \"2025-11-05T18:00:00Z\", "
	             "\"durationMinutes\": -5}"),
	    "buddy.event.logged: durationMinutes must be an integer 0..525600, got -5");
	ck_assert_str_eq(validate("buddy.skill_share.completed",
	                          "{\"sessionId\": \"s-1\", \"teacherId\": \"u-2\", \"learnerId\": "
	                          "\"u-1\", \"skill\": \"x\", \"durationMinutes\": 525601, "
	                          "\"completedAt\": \"2025-11-07T20:00:00Z\"}"),
	                 "buddy.skill_share.completed: durationMinutes must be an integer "
	                 "0..525600, got 525601");
}
END_TEST

/* Timestamps the validator must refuse, and what the message quotes. */
static const char *const bad_times[][2] = {
	{ "\"yesterday\"", "\"yesterday\"" },
	{ "\"2025-11-01T09:00:00\"", "\"2025-11-01T09:00:00\"" }, /* no time zone */
	{ "\"2025-11-01\"", "\"2025-11-01\"" },
	{ "\"2025-11-01 09:00:00Z\"", "\"2025-11-01 09:00:00Z\"" },
	{ "\"2025-02-29T09:00:00Z\"", "\"2025-02-29T09:00:00Z\"" }, /* not a leap year */
	{ "\"2025-04-31T09:00:00Z\"", "\"2025-04-31T09:00:00Z\"" },
	{ "\"2025-13-01T09:00:00Z\"", "\"2025-13-01T09:00:00Z\"" },
	{ "\"2025-11-01T24:00:00Z\"", "\"2025-11-01T24:00:00Z\"" },
	{ "\"2025-11-01T09:60:00Z\"", "\"2025-11-01T09:60:00Z\"" },
	{ "\"2025-11-01T09:00:00.Z\"", "\"2025-11-01T09:00:00.Z\"" },
	{ "\"2025-11-01T09:00:00Zjunk\"", "\"2025-11-01T09:00:00Zjunk\"" },
	{ "\"2025-11-01T09:00:00+15:00\"", "\"2025-11-01T09:00:00+15:00\"" },
	{ "\"0000-01-01T00:00:00Z\"", "\"0000-01-01T00:00:00Z\"" },
	{ "\"\"", "\"\"" },
	{ "1762000000", "1762000000" },
	{ "\"2025-11-01T09:00:00.1234567890123456789012345Z\"",
	  "\"2025-11-01T09:00:00.1234567890123456..." },
};

START_TEST(test_validate_rejects_timestamps_that_are_not_iso_8601_with_a_zone)
{
	char payload[256], want[256];

	for (size_t i = 0; i < sizeof(bad_times) / sizeof(bad_times[0]); i++) {
		snprintf(payload, sizeof(payload),
		         "{\"programEventId\": \"pe-1\", \"userId\": \"u-1\", \"attendedAt\": %s}",
		         bad_times[i][0]);
		snprintf(
		    want, sizeof(want),
		    "buddy.event.attended: attendedAt must be an ISO 8601 timestamp with a time "
		    "zone, got %s",
		    bad_times[i][1]);
		ck_assert_str_eq(validate("buddy.event.attended", payload), want);
	}
}
END_TEST

/* Accepted forms; the database test below checks PostgreSQL reads each. */
static const char *const good_times[] = {
	"2025-11-01T09:00:00Z",
	"2025-11-01T09:00Z",
	"2024-02-29T23:59:59.999999Z",
	"2000-02-29T00:00:00+00:00",
	"2025-11-01T09:00:00.5-08",
	"2025-11-01T09:00:00+0530",
	"2025-11-01T09:00:00.123456789+14:00",
	"0001-01-01T00:00:00Z",
	"9999-12-31T23:59:59-14:00",
};

START_TEST(test_validate_accepts_iso_8601_timestamps_with_a_zone)
{
	char payload[256];

	for (size_t i = 0; i < sizeof(good_times) / sizeof(good_times[0]); i++) {
		snprintf(
		    payload, sizeof(payload),
		    "{\"programEventId\": \"pe-1\", \"userId\": \"u-1\", \"attendedAt\": \"%s\"}",
		    good_times[i]);
		ck_assert_msg(strcmp(validate("buddy.event.attended", payload), "") == 0,
		              "%s refused", good_times[i]);
	}
}
END_TEST

START_TEST(test_validate_rejects_a_correlation_id_that_is_not_a_uuid)
{
	const char *p = samples[0].minimal;

	ck_assert_str_eq(
	    validate_with("buddy.match.created", p,
	                  "{\"correlationId\": \"3f1b3f8f-6a10-4c1f-9c55-6c4c1f0e1b7c\"}"),
	    "");
	ck_assert_str_eq(validate_with("buddy.match.created", p, "{\"correlationId\": null}"), "");
	ck_assert_str_eq(validate_with("buddy.match.created", p, "[\"not an object\"]"), "");
	ck_assert_str_eq(validate_with("buddy.match.created", p, "{\"correlationId\": \"abc\"}"),
	                 "buddy.match.created: metadata.correlationId must be a UUID, got \"abc\"");
	ck_assert_str_eq(validate_with("buddy.match.created", p, "{\"correlationId\": 7}"),
	                 "buddy.match.created: metadata.correlationId must be a UUID, got 7");
}
END_TEST

/* ---- handlers against a real database --------------------------------------- */

static char dbname[64];
static PGconn *conn; /* per test, in the forked child */
static struct registry reg;
static struct config cfg;

static PGconn *connect_to(const char *name)
{
	char ci[128], err[512];
	PGconn *c;

	snprintf(ci, sizeof(ci), "dbname=%s", name ? name : "");
	c = db_connect(name ? ci : "", "check_buddy", err, sizeof(err));
	ck_assert_msg(c != NULL, "connect: %s", err);
	return c;
}

static void must_exec(PGconn *c, const char *sql)
{
	char err[512];

	ck_assert_msg(db_exec(c, sql, err, sizeof(err)), "%s: %s", sql, err);
}

static void enable_buddy(struct config *c)
{
	conf_init(c);
	c->packs.items = calloc(1, sizeof(char *));
	c->packs.items[0] = strdup("buddy");
	c->packs.n = 1;
}

/* Once per run (in the parent): a fresh database with the buddy tables. */
static void db_setup(void)
{
	char sql[128], err[512];
	PGconn *admin = connect_to(NULL);
	int applied;

	log_configure(LOG_WARNING, LOG_FORMAT_LOGFMT); /* no "migration applied" lines */
	snprintf(dbname, sizeof(dbname), "check_buddy_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", dbname);
	must_exec(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
	must_exec(admin, sql);
	PQfinish(admin);
	enable_buddy(&cfg);
	conn = connect_to(dbname);
	ck_assert_msg(migrate_apply(conn, &cfg, &applied, err, sizeof(err)), "migrate: %s", err);
	ck_assert_int_ge(applied, 2);
	PQfinish(conn);
	conn = NULL;
	conf_release(&cfg);
}

static void db_teardown(void)
{
	char sql[128];
	PGconn *admin = connect_to(NULL);

	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	must_exec(admin, sql);
	PQfinish(admin);
}

/* Every test runs in one transaction that is rolled back. */
static void tx_setup(void)
{
	char err[256];

	enable_buddy(&cfg);
	ck_assert_msg(registry_build(&reg, (const char *const *)cfg.packs.items, cfg.packs.n, err,
	                             sizeof(err)),
	              "%s", err);
	conn = connect_to(dbname);
	must_exec(conn, "BEGIN");
}

static void tx_teardown(void)
{
	must_exec(conn, "ROLLBACK");
	PQfinish(conn);
	conn = NULL;
	registry_release(&reg);
	conf_release(&cfg);
}

/* One row, one column of `sql` (no parameters), as text; NULL prints as "<null>". */
static char *q1(const char *sql)
{
	static char buf[1024];
	PGresult *res = PQexec(conn, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(conn));
	ck_assert_msg(PQntuples(res) == 1, "%s: %d rows", sql, PQntuples(res));
	snprintf(buf, sizeof(buf), "%s", PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
	PQclear(res);
	return buf;
}

/* Handle one event as the claim loop would (its id is `id`, created now);
 * returns the outcome and leaves the handler's message in `msg`. */
static enum handler_result handle_as(const char *id, const char *type, const char *payload,
                                     const char *metadata, char *msg, size_t msglen)
{
	const struct handler_entry *e = registry_lookup(&reg, type);
	json_t *p = json_loads(payload, JSON_DECODE_ANY, NULL);
	json_t *m = metadata ? json_loads(metadata, 0, NULL) : NULL;
	char created_at[64];
	struct event ev = { .id = id,
		            .event_type = type,
		            .payload = p,
		            .payload_text = payload,
		            .metadata = m,
		            .created_at = created_at,
		            .attempt = 1 };
	struct handler_ctx ctx = { .conn = conn, .ev = &ev, .handler = e ? e->name : "" };
	enum handler_result r;

	ck_assert_msg(e != NULL, "%s is not routed", type);
	ck_assert_ptr_nonnull(p);
	snprintf(created_at, sizeof(created_at), "%s", q1("SELECT now()::text"));
	r = e->fn(&ctx, &ev);
	/* what dispatch does after a handler */
	if (ctx.savepoint && r != HANDLER_OK)
		must_exec(conn, "ROLLBACK TO SAVEPOINT pgeventd_event");
	if (ctx.savepoint)
		must_exec(conn, "RELEASE SAVEPOINT pgeventd_event");
	snprintf(msg, msglen, "%s", ctx.error);
	json_decref(p);
	json_decref(m);
	return r;
}

static enum handler_result handle(const char *id, const char *type, const char *payload)
{
	char msg[1024];
	enum handler_result r = handle_as(id, type, payload, NULL, msg, sizeof(msg));

	ck_assert_msg(r == HANDLER_OK, "%s: %s", type, msg);
	return r;
}

#define EV(n) "00000000-0000-4000-8000-00000000000" #n

static void create_match(void)
{
	handle(EV(1), "buddy.match.created", samples[0].minimal);
}

START_TEST(test_match_created_inserts_an_active_match)
{
	char msg[256];

	ck_assert_int_eq(handle_as(EV(1), "buddy.match.created", samples[0].full,
	                           "{\"correlationId\": \"3f1b3f8f-6a10-4c1f-9c55-6c4c1f0e1b7c\"}",
	                           msg, sizeof(msg)),
	                 HANDLER_OK);
	ck_assert_str_eq(q1("SELECT concat_ws('|', match_id, participant_id, buddy_id, program_id,"
	                    " status, matched_at AT TIME ZONE 'UTC', ended_at IS NULL,"
	                    " created_event_id) FROM buddy_matches"),
	                 "m-1|u-1|u-2|p-7|active|2025-11-01 09:00:00.123|t|" EV(1));
	ck_assert_str_eq(
	    q1("SELECT concat_ws('|', event_id, event_type, user_id, timestamp = now(),"
	       " payload->>'programId', correlation_id, processed_at = now())"
	       " FROM buddy_system_events"),
	    EV(1) "|buddy.match.created|u-1|t|p-7|3f1b3f8f-6a10-4c1f-9c55-6c4c1f0e1b7c|t");
}
END_TEST

START_TEST(test_match_ended_ends_the_match_with_its_reason)
{
	create_match();
	handle(EV(2), "buddy.match.ended", samples[1].minimal);
	ck_assert_str_eq(q1("SELECT concat_ws('|', status, ended_at AT TIME ZONE 'UTC', end_reason,"
	                    " ended_event_id, updated_at = now()) FROM buddy_matches"),
	                 "ended|2026-02-01 16:30:00|completed|" EV(2) "|t");
	ck_assert_str_eq(q1("SELECT concat_ws('|', event_type, coalesce(user_id, '<null>'))"
	                    " FROM buddy_system_events WHERE event_id = '" EV(2) "'"),
	                 "buddy.match.ended|<null>");
}
END_TEST

START_TEST(test_event_logged_inserts_an_activity)
{
	create_match();
	handle(EV(2), "buddy.event.logged", samples[2].full);
	handle(EV(3), "buddy.event.logged",
	       "{\"activityId\": \"a-2\", \"matchId\": \"m-1\", \"activityType\": \"hangout\","
	       " \"occurredAt\": \"2025-11-06T18:00:00Z\"}");
	ck_assert_str_eq(
	    q1("SELECT string_agg(concat_ws('|', activity_id, match_id, activity_type,"
	       " occurred_at AT TIME ZONE 'UTC', coalesce(duration_minutes::text, '-'),"
	       " coalesce(notes, '-'), event_id), ' / ' ORDER BY activity_id)"
	       " FROM buddy_events"),
	    "a-1|m-1|workshop|2025-11-05 18:00:00|90||" EV(
	        2) " / "
	           "a-2|m-1|hangout|2025-11-06 18:00:00|-|-|" EV(3));
	ck_assert_str_eq(q1("SELECT count(*) FROM buddy_system_events"), "3");
}
END_TEST

START_TEST(test_event_attended_is_stored_raw_only)
{
	handle(EV(1), "buddy.event.attended", samples[3].minimal);
	ck_assert_str_eq(q1("SELECT concat_ws('|', event_type, user_id, payload->>'programEventId',"
	                    " payload->>'attendedAt') FROM buddy_system_events"),
	                 "buddy.event.attended|u-1|pe-1|2025-11-06T10:00:00Z");
	ck_assert_str_eq(q1("SELECT (SELECT count(*) FROM buddy_matches) + (SELECT count(*) FROM"
	                    " buddy_events) + (SELECT count(*) FROM buddy_checkins) + (SELECT"
	                    " count(*) FROM buddy_feedback)"),
	                 "0");
}
END_TEST

START_TEST(test_skill_share_completed_is_stored_raw_only)
{
	handle(EV(1), "buddy.skill_share.completed", samples[4].minimal);
	ck_assert_str_eq(q1("SELECT concat_ws('|', event_type, user_id, payload->>'learnerId',"
	                    " payload->>'skill', payload->'durationMinutes')"
	                    " FROM buddy_system_events"),
	                 "buddy.skill_share.completed|u-2|u-1|cooking|0");
}
END_TEST

START_TEST(test_checkin_completed_inserts_a_checkin)
{
	create_match();
	handle(EV(2), "buddy.checkin.completed",
	       "{\"checkinId\": \"c-1\", \"matchId\": \"m-1\", \"userId\": \"u-1\", \"mood\": 4,"
	       " \"checkedInAt\": \"2025-11-08T08:00:00Z\", \"notes\": \"feeling settled\"}");
	ck_assert_str_eq(
	    q1("SELECT concat_ws('|', checkin_id, match_id, user_id, mood,"
	       " checked_in_at AT TIME ZONE 'UTC', notes, event_id) FROM buddy_checkins"),
	    "c-1|m-1|u-1|4|2025-11-08 08:00:00|feeling settled|" EV(2));
	ck_assert_str_eq(q1("SELECT user_id FROM buddy_system_events WHERE event_id = '" EV(2) "'"),
	                 "u-1");
}
END_TEST

START_TEST(test_feedback_submitted_inserts_feedback)
{
	create_match();
	handle(EV(2), "buddy.feedback.submitted", samples[6].full);
	ck_assert_str_eq(q1("SELECT concat_ws('|', feedback_id, match_id, from_user_id, rating,"
	                    " comment, submitted_at AT TIME ZONE 'UTC', event_id)"
	                    " FROM buddy_feedback"),
	                 "f-1|m-1|u-1|1|great buddy \xc3\xa9|2025-11-09 12:00:00|" EV(2));
}
END_TEST

START_TEST(test_milestone_reached_is_stored_raw_only)
{
	handle(EV(1), "buddy.milestone.reached", samples[7].minimal);
	ck_assert_str_eq(q1("SELECT concat_ws('|', event_type, user_id, payload->>'milestone',"
	                    " timestamp = now()) FROM buddy_system_events"),
	                 "buddy.milestone.reached|u-1|first_month|t");
}
END_TEST

START_TEST(test_an_event_of_a_missing_match_is_retried_without_writing)
{
	static const int refer[] = { 1, 2, 5, 6 }; /* ended, logged, checkin, feedback */
	char msg[256], want[256];

	for (size_t i = 0; i < sizeof(refer) / sizeof(refer[0]); i++) {
		const struct sample *s = &samples[refer[i]];

		ck_assert_int_eq(handle_as(EV(2), s->type, s->minimal, NULL, msg, sizeof(msg)),
		                 HANDLER_RETRY);
		snprintf(want, sizeof(want), "%s: matchId m-1 does not exist yet", s->type);
		ck_assert_str_eq(msg, want);
	}
	ck_assert_str_eq(q1("SELECT count(*) FROM buddy_system_events"), "0");
}
END_TEST

START_TEST(test_an_invalid_event_fails_before_any_statement)
{
	char msg[256];

	ck_assert_int_eq(handle_as(EV(1), "buddy.match.created", "{\"matchId\": \"m-1\"}", NULL,
	                           msg, sizeof(msg)),
	                 HANDLER_FAIL);
	ck_assert_str_eq(msg, "buddy.match.created: participantId is required");
	ck_assert_str_eq(q1("SELECT count(*) FROM buddy_system_events"), "0");
}
END_TEST

START_TEST(test_handling_twice_writes_no_duplicate_and_keeps_an_ended_match_ended)
{
	create_match();
	handle(EV(2), "buddy.match.ended", samples[1].minimal);
	for (int round = 0; round < 2; round++) {
		handle(EV(1), "buddy.match.created", samples[0].full);
		handle(EV(2), "buddy.match.ended",
		       "{\"matchId\": \"m-1\", \"endedAt\": \"2027-01-01T00:00:00Z\", \"reason\": "
		       "\"other\"}");
		handle(EV(3), "buddy.event.logged", samples[2].full);
		handle(EV(4), "buddy.checkin.completed", samples[5].minimal);
		handle(EV(5), "buddy.feedback.submitted", samples[6].minimal);
		handle(EV(6), "buddy.event.attended", samples[3].minimal);
	}
	ck_assert_str_eq(q1("SELECT concat_ws('|', status, program_id IS NULL, end_reason,"
	                    " ended_at AT TIME ZONE 'UTC') FROM buddy_matches"),
	                 "ended|t|completed|2026-02-01 16:30:00");
	ck_assert_str_eq(q1("SELECT concat_ws('|', (SELECT count(*) FROM buddy_events),"
	                    " (SELECT count(*) FROM buddy_checkins), (SELECT count(*) FROM"
	                    " buddy_feedback), (SELECT count(*) FROM buddy_system_events))"),
	                 "1|1|1|6");
}
END_TEST

START_TEST(test_postgresql_reads_every_accepted_timestamp)
{
	char sql[256];

	for (size_t i = 0; i < sizeof(good_times) / sizeof(good_times[0]); i++) {
		snprintf(sql, sizeof(sql), "SELECT '%s'::timestamptz IS NOT NULL", good_times[i]);
		ck_assert_str_eq(q1(sql), "t");
	}
	/* independent of the session's DateStyle and time zone */
	must_exec(conn, "SET LOCAL DateStyle = 'SQL, DMY'; SET LOCAL TimeZone = 'Asia/Kolkata'");
	ck_assert_str_eq(q1("SELECT '2025-11-01T09:00:00.5-08'::timestamptz ="
	                    " '2025-11-01 17:00:00.5+00'::timestamptz"),
	                 "t");
}
END_TEST

Suite *buddy_suite(void)
{
	Suite *s = suite_create("buddy");
	TCase *tc = tcase_create("validation");

	tcase_add_test(tc, test_validate_accepts_a_valid_payload_of_every_type);
	tcase_add_test(tc, test_every_registered_buddy_type_has_rules);
	tcase_add_test(tc, test_validate_rejects_a_payload_that_is_not_an_object);
	tcase_add_test(tc, test_validate_rejects_a_missing_required_field);
	tcase_add_test(tc, test_validate_rejects_a_field_of_the_wrong_json_type);
	tcase_add_test(tc, test_validate_rejects_empty_ids_and_labels);
	tcase_add_test(tc, test_validate_rejects_an_id_longer_than_100_characters);
	tcase_add_test(tc, test_validate_rejects_ratings_and_moods_out_of_range);
	tcase_add_test(tc, test_validate_rejects_durations_out_of_range);
	tcase_add_test(tc, test_validate_rejects_timestamps_that_are_not_iso_8601_with_a_zone);
	tcase_add_test(tc, test_validate_accepts_iso_8601_timestamps_with_a_zone);
	tcase_add_test(tc, test_validate_rejects_a_correlation_id_that_is_not_a_uuid);
	suite_add_tcase(s, tc);

	/* Without a test cluster (make distcheck, a bare `make check`) only
	 * the pure tests run, as the integration tests skip. */
	if (!getenv("PGEVENTD_TEST_PG"))
		return s;
	tc = tcase_create("database");
	tcase_set_timeout(tc, 30);
	tcase_add_unchecked_fixture(tc, db_setup, db_teardown);
	tcase_add_checked_fixture(tc, tx_setup, tx_teardown);
	tcase_add_test(tc, test_match_created_inserts_an_active_match);
	tcase_add_test(tc, test_match_ended_ends_the_match_with_its_reason);
	tcase_add_test(tc, test_event_logged_inserts_an_activity);
	tcase_add_test(tc, test_event_attended_is_stored_raw_only);
	tcase_add_test(tc, test_skill_share_completed_is_stored_raw_only);
	tcase_add_test(tc, test_checkin_completed_inserts_a_checkin);
	tcase_add_test(tc, test_feedback_submitted_inserts_feedback);
	tcase_add_test(tc, test_milestone_reached_is_stored_raw_only);
	tcase_add_test(tc, test_an_event_of_a_missing_match_is_retried_without_writing);
	tcase_add_test(tc, test_an_invalid_event_fails_before_any_statement);
	tcase_add_test(tc, test_handling_twice_writes_no_duplicate_and_keeps_an_ended_match_ended);
	tcase_add_test(tc, test_postgresql_reads_every_accepted_timestamp);
	suite_add_tcase(s, tc);
	return s;
}
