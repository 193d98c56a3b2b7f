/*
 * cmd_dba.c -- the DBA's commands: status, replay, dead-letters list, show.
 *
 *   pgeventd status [--json]
 *   pgeventd replay --id ID... | --type T [--since TS] [--until TS] | --dead-letters [--type T]
 *                   [--dry-run] [--json]
 *   pgeventd dead-letters list [--type T] [--since TS] [--limit N] [--json]
 *   pgeventd show ID [--json]
 *
 * They are SQL a DBA could type, with guard rails: every value is a
 * parameter, replay is the documented `UPDATE events SET processed =
 * false` (the replay trigger resets the attempts and wakes the workers),
 * and every statement has a timeout so a huge table cannot hang a screen.
 * Output is aligned text, or one JSON document with --json.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd_dba.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* status shows what it could get: each figure gives up after this. */
#define STATUS_TIMEOUT_MS 5000
/* show and dead-letters list read a few rows through indexes. */
#define READ_TIMEOUT_MS 10000
/* One UPDATE may touch many rows (the trigger runs for each); past this
 * it is cancelled and, being one statement, changes nothing. */
#define REPLAY_TIMEOUT_MS 300000
/* Replayed (or, with --dry-run, replayable) ids printed by replay. */
#define REPLAY_SAMPLE "20"

#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_BAD_TEXT       "22P02"

const char cmd_status_usage[] =
    "status [--json]\n"
    "  The queue (pending events: due now or scheduled later, the oldest one's age,\n"
    "  how many are retrying), events processed in the last hour, dead letters by\n"
    "  event type and webhook deliveries by status. A figure that takes more than\n"
    "  5 s is shown as unknown (null in --json, named in \"timed_out\").\n"
    "  Exit: 0 shown, 1 database error, 64 usage, 69 database unavailable.";

const char cmd_replay_usage[] =
    "replay --id ID [ID...] [--dry-run] [--json]\n"
    "       replay --type TYPE [--since TS] [--until TS] [--dry-run] [--json]\n"
    "       replay --dead-letters [--type TYPE] [--since TS] [--until TS] [--dry-run] [--json]\n"
    "  Run processed events again: UPDATE events SET processed = false, and the\n"
    "  replay trigger resets their attempts and wakes the workers. Events still\n"
    "  pending are skipped. The filters combine (AND); one of --id, --type and\n"
    "  --dead-letters is required.\n"
    "  --id ID...        these events (every one must exist)\n"
    "  --type TYPE       events of this type\n"
    "  --since TS        created at or after TS (anything PostgreSQL reads as a\n"
    "                    timestamptz: '2026-11-23 10:00', 'yesterday')\n"
    "  --until TS        created before TS\n"
    "  --dead-letters    events whose last outcome was a dead letter\n"
    "  --dry-run         count them and list up to 20; change nothing\n"
    "  Exit: 0 done, 1 database error, 64 usage (also a malformed id or timestamp),\n"
    "  66 no event with a given id (nothing replayed), 69 database unavailable.\n"
    "  Ids are checked before connecting; a timestamp is read by PostgreSQL, so\n"
    "  with the database down a malformed one exits 69.";

const char cmd_dead_letters_usage[] =
    "dead-letters list [--type TYPE] [--since TS] [--limit N] [--json]\n"
    "  Dead letters, newest first: created_at, event_id, event_type, attempts,\n"
    "  handler, error_message (cut in the text table, whole in --json).\n"
    "  --since TS   written at or after TS;  --limit N   at most N rows (50; 1-10000)\n"
    "  Exit: 0 listed, 1 database error, 64 usage (also a malformed timestamp),\n"
    "  69 database unavailable (also before a timestamp could be read).";

const char cmd_show_usage[] =
    "show ID [--json]\n"
    "  One event with every column (payload, attempts, next_attempt_at, last_error,\n"
    "  processed_at, ...), its dead letters and its webhook deliveries, each with\n"
    "  the number of attempts logged.\n"
    "  Exit: 0 shown, 1 database error, 64 usage or not an event id, 66 no event\n"
    "  with that id, 69 database unavailable.";

/* ---- shared -------------------------------------------------------------- */

/* "pgeventd CMD: unexpected argument X" and the usage: for stray operands. */
static int extra_argument(const char *cmd, const char *arg, const char *usage)
{
	fprintf(stderr, "pgeventd %s: unexpected argument %s\n", cmd, arg);
	return cli_usage(usage);
}

/* Connect and set the session up for a command; NULL (already told) means
 * exit `*rc`. */
static PGconn *dba_connect(const struct config *cfg, const char *app_name, int timeout_ms, int *rc)
{
	PGconn *conn = cli_connect(cfg, app_name);

	*rc = EX_UNAVAILABLE;
	if (conn && !cli_session(conn, timeout_ms)) {
		PQfinish(conn);
		conn = NULL;
		*rc = 1;
	}
	return conn;
}

/*
 * Let the server read a timestamp given to option `opt` (so that whatever
 * PostgreSQL accepts works, 'yesterday' included). Returns 0 when it
 * reads, EX_USAGE when it does not, 1 on any other error; prints why.
 */
static int check_timestamp(PGconn *conn, const char *cmd, const char *opt, const char *value)
{
	const char *p[1] = { value };
	char state[CLI_SQLSTATE_LEN], err[512];
	PGresult *res;

	if (!value)
		return 0;
	res = cli_try_exec(conn, "SELECT $1::timestamptz", 1, p, state, err, sizeof(err));
	if (res) {
		PQclear(res);
		return 0;
	}
	/* class 22, data exception: the value, not the database */
	if (strncmp(state, "22", 2) == 0) {
		fprintf(stderr, "pgeventd %s: %s: not a timestamp: %s\n", cmd, opt, value);
		return EX_USAGE;
	}
	fprintf(stderr, "pgeventd: %s\n", err);
	return 1;
}

/*
 * The part of a timestamp's check that needs no database: it is not
 * empty. The rest is PostgreSQL's (check_timestamp), once connected.
 */
static bool timestamp_given(const char *cmd, const char *opt, const char *value)
{
	if (!value || value[0])
		return true;
	fprintf(stderr, "pgeventd %s: %s: not a timestamp: (empty)\n", cmd, opt);
	return false;
}

/* Whether event `id` exists: 0 yes, EX_NOINPUT no, EX_USAGE when
 * it is not a uuid, 1 on a database error; prints why. */
static int check_event(PGconn *conn, const char *cmd, const char *id)
{
	const char *p[1] = { id };
	char state[CLI_SQLSTATE_LEN], err[512];
	PGresult *res = cli_try_exec(conn, "SELECT 1 FROM events WHERE id = $1::uuid", 1, p, state,
	                             err, sizeof(err));
	int rc = 0;

	if (!res && strcmp(state, SQLSTATE_BAD_TEXT) == 0) {
		fprintf(stderr, "pgeventd %s: not an event id: %s\n", cmd, id);
		return EX_USAGE;
	}
	if (!res) {
		fprintf(stderr, "pgeventd: %s\n", err);
		return 1;
	}
	if (PQntuples(res) == 0) {
		fprintf(stderr, "pgeventd: no event with id %s\n", id);
		rc = EX_NOINPUT;
	}
	PQclear(res);
	return rc;
}

static long long int_of(const json_t *v)
{
	return (long long)json_integer_value(v);
}

/* ---- status -------------------------------------------------------------- */

/* The queue, through events_due_idx: it holds only unprocessed rows, so
 * this costs the backlog, not the table. "Due" is the claim's own
 * condition (src/worker.c): next_attempt_at, else created_at, is past. */
static const char status_queue_sql[] =
    "SELECT count(*) AS pending,"
    " count(*) FILTER (WHERE coalesce(next_attempt_at, created_at) <= now()) AS due_now,"
    " count(*) FILTER (WHERE coalesce(next_attempt_at, created_at) > now()) AS scheduled_later,"
    " count(*) FILTER (WHERE attempts > 0) AS retrying,"
    " min(created_at) AS oldest_pending_created_at,"
    " floor(extract(epoch FROM now() - min(created_at)))::bigint AS oldest_pending_age_s"
    " FROM events WHERE NOT processed";

/* The keys status_queue_sql fills, null when it timed out. */
static const char *const status_queue_keys[] = { "pending",
	                                         "due_now",
	                                         "scheduled_later",
	                                         "retrying",
	                                         "oldest_pending_created_at",
	                                         "oldest_pending_age_s",
	                                         NULL };

/* Served by events_processed_at_idx (migration 0003); without it a scan
 * of the whole table, the figure most likely to time out on a big one. */
static const char status_processed_sql[] =
    "SELECT count(*) FROM events WHERE processed AND processed_at >= now() - interval '1 hour'";

static const char status_dead_sql[] =
    "SELECT event_type, count(*) AS count, max(created_at) AS latest"
    " FROM event_dead_letters GROUP BY event_type ORDER BY count(*) DESC, event_type";

static const char status_deliveries_sql[] =
    "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
    " count(*) FILTER (WHERE status = 'in_flight') AS in_flight,"
    " count(*) FILTER (WHERE status = 'delivered') AS delivered,"
    " count(*) FILTER (WHERE status = 'failed') AS failed,"
    " count(*) FILTER (WHERE status = 'dead') AS dead"
    " FROM deliveries";

/* Run one figure's query: 1 with `*res` set, 0 when it timed out, -1 on
 * any other error (printed). */
static int status_figure(PGconn *conn, const char *sql, PGresult **res)
{
	char state[CLI_SQLSTATE_LEN], err[512];

	*res = cli_try_exec(conn, sql, 0, NULL, state, err, sizeof(err));
	if (*res)
		return 1;
	if (strcmp(state, SQLSTATE_QUERY_CANCELED) == 0)
		return 0;
	fprintf(stderr, "pgeventd: %s\n", err);
	return -1;
}

/* 7265 -> "2h 01m 05s" */
static void format_age(long long s, char *buf, size_t len)
{
	long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

	if (d > 0)
		snprintf(buf, len, "%lldd %lldh %02lldm", d, h, m);
	else if (h > 0)
		snprintf(buf, len, "%lldh %02lldm %02llds", h, m, sec);
	else if (m > 0)
		snprintf(buf, len, "%lldm %02llds", m, sec);
	else
		snprintf(buf, len, "%llds", s < 0 ? 0 : s);
}

/* A time of the JSON document (RFC 3339) as the screen shows times:
 * "YYYY-MM-DD HH:MM:SS", in the session's time zone like the rest. */
static const char *screen_time(const json_t *v, char *buf, size_t len)
{
	const char *s = json_string_value(v);

	if (!s)
		return "-";
	if (strlen(s) < 19 || s[10] != 'T')
		return s;
	snprintf(buf, len, "%.10s %.8s", s, s + 11);
	return buf;
}

#define STATUS_UNKNOWN "unknown (timed out after 5 s)"

/* Labels are padded to `w` columns: 22, or the longest event type. */
static void print_figure(int w, const char *label, const json_t *v)
{
	if (json_is_null(v))
		printf("  %-*s %s\n", w, label, STATUS_UNKNOWN);
	else
		printf("  %-*s %lld\n", w, label, int_of(v));
}

/* The text screen, read back from the JSON document: one source of figures. */
static void print_status(const json_t *doc)
{
	const json_t *ev = json_object_get(doc, "events");
	const json_t *dead = json_object_get(doc, "dead_letters");
	const json_t *del = json_object_get(doc, "deliveries");
	const json_t *pending = json_object_get(ev, "pending");
	const json_t *oldest = json_object_get(ev, "oldest_pending_created_at");
	static const char *const statuses[] = { "pending", "in_flight", "delivered",
		                                "failed",  "dead",      NULL };
	const json_t *types = json_object_get(dead, "by_type"), *t;
	char age[64], when[32];
	size_t i;
	int w = 22;

	json_array_foreach(types, i, t)
	{
		const char *type = json_string_value(json_object_get(t, "event_type"));

		if (type && (int)strlen(type) > w)
			w = (int)strlen(type);
	}
	printf("events\n");
	if (json_is_null(pending)) {
		printf("  %-*s %s\n", w, "pending", STATUS_UNKNOWN);
	} else {
		printf("  %-*s %lld (%lld due now, %lld scheduled later)\n", w, "pending",
		       int_of(pending), int_of(json_object_get(ev, "due_now")),
		       int_of(json_object_get(ev, "scheduled_later")));
		if (json_is_string(oldest)) {
			format_age(int_of(json_object_get(ev, "oldest_pending_age_s")), age,
			           sizeof(age));
			printf("  %-*s %s (created %s)\n", w, "oldest pending", age,
			       screen_time(oldest, when, sizeof(when)));
		} else {
			printf("  %-*s -\n", w, "oldest pending");
		}
		print_figure(w, "retrying", json_object_get(ev, "retrying"));
	}
	print_figure(w, "processed, last hour", json_object_get(ev, "processed_last_hour"));

	if (json_is_null(dead)) {
		printf("%-*s %s\n", w + 2, "dead letters", STATUS_UNKNOWN);
	} else {
		printf("%-*s %lld\n", w + 2, "dead letters",
		       int_of(json_object_get(dead, "total")));
		json_array_foreach(types, i, t)
		{
			printf("  %-*s %lld (latest %s)\n", w,
			       json_string_value(json_object_get(t, "event_type")),
			       int_of(json_object_get(t, "count")),
			       screen_time(json_object_get(t, "latest"), when, sizeof(when)));
		}
	}

	printf("deliveries\n");
	for (int k = 0; statuses[k]; k++)
		print_figure(w, statuses[k],
		             json_is_null(del) ? del : json_object_get(del, statuses[k]));
}

int cmd_status_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *doc = NULL, *events = NULL, *timed_out = NULL, *v;
	PGresult *res = NULL;
	PGconn *conn = NULL;
	bool json = false;
	int opt, got, rc;

	optind = 0;
	while ((opt = cli_getopt(argc, argv, opts, "status")) != -1) {
		if (opt != 'j')
			return cli_usage(cmd_status_usage);
		json = true;
	}
	if (optind < argc)
		return extra_argument("status", argv[optind], cmd_status_usage);
	conn = dba_connect(cfg, "pgeventd status", STATUS_TIMEOUT_MS, &rc);
	if (!conn)
		return rc;
	rc = 1;
	doc = json_object();
	events = json_object();
	timed_out = json_array();
	json_object_set(doc, "events", events);

	if ((got = status_figure(conn, status_queue_sql, &res)) < 0)
		goto out;
	if (got) {
		v = cli_row_json(res, 0);
		json_object_update(events, v);
		json_decref(v);
	} else {
		for (int i = 0; status_queue_keys[i]; i++)
			json_object_set_new(events, status_queue_keys[i], json_null());
		json_array_append_new(timed_out, json_string("queue"));
	}
	PQclear(res);

	if ((got = status_figure(conn, status_processed_sql, &res)) < 0)
		goto out;
	json_object_set_new(events, "processed_last_hour",
	                    got ? cli_value_json(res, 0, 0) : json_null());
	if (!got)
		json_array_append_new(timed_out, json_string("processed_last_hour"));
	PQclear(res);

	if ((got = status_figure(conn, status_dead_sql, &res)) < 0)
		goto out;
	if (got) {
		json_t *dead = json_object();
		long long total = 0;

		for (int r = 0; r < PQntuples(res); r++)
			total += strtoll(PQgetvalue(res, r, 1), NULL, 10);
		json_object_set_new(dead, "total", json_integer(total));
		json_object_set_new(dead, "by_type", cli_rows_json(res));
		json_object_set_new(doc, "dead_letters", dead);
	} else {
		json_object_set_new(doc, "dead_letters", json_null());
		json_array_append_new(timed_out, json_string("dead_letters"));
	}
	PQclear(res);

	if ((got = status_figure(conn, status_deliveries_sql, &res)) < 0)
		goto out;
	json_object_set_new(doc, "deliveries", got ? cli_row_json(res, 0) : json_null());
	if (!got)
		json_array_append_new(timed_out, json_string("deliveries"));
	PQclear(res);
	res = NULL;

	json_object_set(doc, "timed_out", timed_out);
	if (json)
		cli_print_json(doc);
	else
		print_status(doc);
	rc = 0;
out:
	PQclear(res);
	json_decref(timed_out);
	json_decref(events);
	json_decref(doc);
	PQfinish(conn);
	return rc;
}

/* ---- replay -------------------------------------------------------------- */

/*
 * Which events a replay concerns, on `e`: $1 a JSON array of ids or NULL,
 * $2 the type, $3/$4 the created_at bounds, $5 --dead-letters. With unnamed
 * statements the planner sees the values, so the NULL tests fold away and
 * the (event_type, created_at) index serves --type.
 *
 * --dead-letters takes the events whose latest outcome was a dead letter:
 * the worker writes the dead letter and processed_at in one transaction
 * (the same now()), so an event replayed since then and handled fine has
 * a later processed_at and is left alone; rows from before pgeventd have
 * no processed_at and count.
 */
#define REPLAY_FILTER                                                                              \
	" ($1::jsonb IS NULL OR e.id IN (SELECT jsonb_array_elements_text($1::jsonb)::uuid))"      \
	" AND ($2::text IS NULL OR e.event_type = $2)"                                             \
	" AND ($3::timestamptz IS NULL OR e.created_at >= $3::timestamptz)"                        \
	" AND ($4::timestamptz IS NULL OR e.created_at < $4::timestamptz)"                         \
	" AND (NOT $5::boolean OR EXISTS (SELECT 1 FROM event_dead_letters d"                      \
	"      WHERE d.event_id = e.id AND (e.processed_at IS NULL OR d.created_at >= "            \
	"e.processed_at)))"

/* The counts and the first $6 ids; the "skipped" scan reads the snapshot
 * from before the UPDATE, so it counts exactly what was pending already. */
#define REPLAY_REPORT                                                                              \
	" SELECT (SELECT count(*) FROM replayed) AS replayed,"                                     \
	" (SELECT count(*) FROM events e WHERE NOT e.processed AND" REPLAY_FILTER ") AS skipped,"  \
	" s.id FROM (VALUES (1)) AS one (x) LEFT JOIN LATERAL"                                     \
	" (SELECT id FROM replayed ORDER BY created_at, id LIMIT $6::int) s ON true"

/* The DBA's UPDATE: the events_replay trigger does the rest. */
static const char replay_sql[] =
    "WITH replayed AS (UPDATE events e SET processed = false"
    " WHERE e.processed AND" REPLAY_FILTER " RETURNING e.id, e.created_at)" REPLAY_REPORT;

static const char replay_dry_sql[] = "WITH replayed AS (SELECT e.id, e.created_at FROM events e"
                                     " WHERE e.processed AND" REPLAY_FILTER ")" REPLAY_REPORT;

/* Collect an --id: refused here, before connecting, when it is not a uuid. */
static bool add_id(json_t *ids, const char *id)
{
	if (cli_uuid_ok(id) && json_array_append_new(ids, json_string(id)) == 0)
		return true;
	fprintf(stderr, "pgeventd replay: not an event id: %s\n", id);
	return false;
}

static void print_replay(const PGresult *res, bool dry_run, bool json)
{
	long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	long long skipped = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	int shown = 0;

	if (json) {
		json_t *doc = json_object(), *ids = json_array();

		for (int r = 0; r < PQntuples(res); r++)
			if (!PQgetisnull(res, r, 2))
				json_array_append_new(ids, json_string(PQgetvalue(res, r, 2)));
		json_object_set_new(doc, "dry_run", json_boolean(dry_run));
		json_object_set_new(doc, "replayed", json_integer(n));
		json_object_set_new(doc, "skipped", json_integer(skipped));
		json_object_set_new(doc, "ids", ids);
		cli_print_json(doc);
		json_decref(doc);
		return;
	}
	printf("%s%lld event%s %s", dry_run ? "dry run: " : "", n, n == 1 ? "" : "s",
	       dry_run ? "would be replayed" : "replayed");
	if (skipped > 0)
		printf(", %lld skipped (already pending)", skipped);
	printf("\n");
	if (!dry_run)
		return;
	for (int r = 0; r < PQntuples(res); r++)
		if (!PQgetisnull(res, r, 2)) {
			printf("  %s\n", PQgetvalue(res, r, 2));
			shown++;
		}
	if (n > shown)
		printf("  ... and %lld more\n", n - shown);
}

int cmd_replay_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "id", required_argument, NULL, 'i' },
		{ "type", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "dead-letters", no_argument, NULL, 'd' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *type = NULL, *since = NULL, *until = NULL;
	bool dead = false, dry_run = false, json = false;
	json_t *ids = json_array();
	char *ids_text = NULL;
	const char *p[6];
	PGresult *res = NULL;
	PGconn *conn = NULL;
	int opt, rc = EX_USAGE;
	size_t i;
	json_t *id;

	optind = 0;
	while ((opt = cli_getopt(argc, argv, opts, "replay")) != -1) {
		switch (opt) {
		case 'i':
			if (!add_id(ids, optarg))
				goto out;
			break;
		case 't':
			type = optarg;
			break;
		case 's':
			since = optarg;
			break;
		case 'u':
			until = optarg;
			break;
		case 'd':
			dead = true;
			break;
		case 'n':
			dry_run = true;
			break;
		case 'j':
			json = true;
			break;
		default:
			cli_usage(cmd_replay_usage);
			goto out;
		}
	}
	/* "--id A B C": the operands are more ids, and only after --id. */
	for (; optind < argc; optind++) {
		if (json_array_size(ids) == 0) {
			extra_argument("replay", argv[optind], cmd_replay_usage);
			goto out;
		}
		if (!add_id(ids, argv[optind]))
			goto out;
	}
	if (json_array_size(ids) == 0 && !type && !dead) {
		fprintf(stderr,
		        "pgeventd replay: say which events: --id, --type or --dead-letters\n");
		cli_usage(cmd_replay_usage);
		goto out;
	}
	if (!timestamp_given("replay", "--since", since) ||
	    !timestamp_given("replay", "--until", until)) {
		cli_usage(cmd_replay_usage);
		goto out;
	}
	conn = dba_connect(cfg, "pgeventd replay", REPLAY_TIMEOUT_MS, &rc);
	if (!conn)
		goto out;
	/* Refuse the whole replay on one bad value: a typo must not replay
	 * a different set than the one asked for. */
	if ((rc = check_timestamp(conn, "replay", "--since", since)) != 0 ||
	    (rc = check_timestamp(conn, "replay", "--until", until)) != 0)
		goto out;
	json_array_foreach(ids, i, id)
	{
		if ((rc = check_event(conn, "replay", json_string_value(id))) != 0)
			goto out;
	}
	rc = 1;
	ids_text = json_array_size(ids) ? json_dumps(ids, JSON_COMPACT) : NULL;
	if (json_array_size(ids) && !ids_text)
		goto out;
	p[0] = ids_text;
	p[1] = type;
	p[2] = since;
	p[3] = until;
	p[4] = dead ? "t" : "f";
	p[5] = REPLAY_SAMPLE;
	res = cli_exec(conn, dry_run ? replay_dry_sql : replay_sql, 6, p);
	if (!res)
		goto out;
	print_replay(res, dry_run, json);
	rc = 0;
out:
	PQclear(res);
	free(ids_text);
	json_decref(ids);
	PQfinish(conn);
	return rc;
}

/* ---- dead-letters list --------------------------------------------------- */

static const char dead_list_sql[] =
    "SELECT created_at, event_id, event_type, attempts, handler, error_message"
    " FROM event_dead_letters"
    " WHERE ($1::text IS NULL OR event_type = $1)"
    " AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)"
    " ORDER BY created_at DESC, id DESC LIMIT $3::int";

/* A --limit: a whole number from 1 to 10000. */
static bool limit_ok(const char *s)
{
	return cli_int_ok(s, 1, 10000);
}

int cmd_dead_letters_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "since", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *type = NULL, *since = NULL, *limit = "50";
	bool json = false;
	PGresult *res = NULL;
	PGconn *conn = NULL;
	json_t *doc = NULL;
	const char *p[3];
	int opt, rc;

	if (argc < 2 || strcmp(argv[1], "list") != 0) {
		if (argc >= 2)
			fprintf(stderr, "pgeventd dead-letters: unknown verb %s\n", argv[1]);
		return cli_usage(cmd_dead_letters_usage);
	}
	/* argv + 1: getopt skips its argv[0], here the verb */
	optind = 0;
	while ((opt = cli_getopt(argc - 1, argv + 1, opts, "dead-letters list")) != -1) {
		switch (opt) {
		case 't':
			type = optarg;
			break;
		case 's':
			since = optarg;
			break;
		case 'l':
			limit = optarg;
			break;
		case 'j':
			json = true;
			break;
		default:
			return cli_usage(cmd_dead_letters_usage);
		}
	}
	if (optind < argc - 1)
		return extra_argument("dead-letters list", argv[1 + optind],
		                      cmd_dead_letters_usage);
	if (!limit_ok(limit)) {
		fprintf(stderr, "pgeventd dead-letters list: --limit wants 1 to 10000, got %s\n",
		        limit);
		return cli_usage(cmd_dead_letters_usage);
	}
	if (!timestamp_given("dead-letters list", "--since", since))
		return cli_usage(cmd_dead_letters_usage);
	conn = dba_connect(cfg, "pgeventd dead-letters", READ_TIMEOUT_MS, &rc);
	if (!conn)
		return rc;
	if ((rc = check_timestamp(conn, "dead-letters list", "--since", since)) != 0)
		goto out;
	rc = 1;
	p[0] = type;
	p[1] = since;
	p[2] = limit;
	res = cli_exec(conn, dead_list_sql, 3, p);
	if (!res)
		goto out;
	if (json) {
		doc = cli_rows_json(res);
		cli_print_json(doc);
	} else {
		cli_print_table(res);
	}
	rc = 0;
out:
	json_decref(doc);
	PQclear(res);
	PQfinish(conn);
	return rc;
}

/* ---- show ---------------------------------------------------------------- */

static const char show_event_sql[] =
    "SELECT id, event_type, aggregate_type, aggregate_id, created_at, created_by, version,"
    " processed, processed_at, attempts, next_attempt_at, last_error, idempotency_key,"
    " metadata, payload FROM events WHERE id = $1::uuid";

static const char show_dead_sql[] =
    "SELECT created_at, attempts, retry_count, handler, error_message"
    " FROM event_dead_letters WHERE event_id = $1::uuid ORDER BY created_at, id";

/* Never the subscription's secret: only its name. */
static const char show_deliveries_sql[] =
    "SELECT s.name AS subscription, d.id, d.status, d.attempt, d.last_status,"
    " d.next_attempt_at, d.finished_at,"
    " (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) AS attempts_logged,"
    " d.last_error"
    " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    " WHERE d.event_id = $1::uuid ORDER BY s.name, d.id";

/* The event as "column  value" lines; values whole, NULL as "-". */
static void print_event(const PGresult *ev)
{
	printf("event %s\n", PQgetvalue(ev, 0, 0));
	for (int c = 1; c < PQnfields(ev); c++)
		printf("  %-16s %s\n", PQfname(ev, c),
		       PQgetisnull(ev, 0, c) ? "-" : PQgetvalue(ev, 0, c));
}

int cmd_show_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	PGresult *ev = NULL, *dead = NULL, *del = NULL;
	char state[CLI_SQLSTATE_LEN], err[512];
	PGconn *conn = NULL;
	json_t *doc = NULL;
	bool json = false;
	int opt, rc;

	optind = 0;
	while ((opt = cli_getopt(argc, argv, opts, "show")) != -1) {
		if (opt != 'j')
			return cli_usage(cmd_show_usage);
		json = true;
	}
	if (optind >= argc) {
		fprintf(stderr, "pgeventd show: which event? show ID\n");
		return cli_usage(cmd_show_usage);
	}
	if (optind + 1 < argc)
		return extra_argument("show", argv[optind + 1], cmd_show_usage);
	const char *p[1] = { argv[optind] };

	/* Before connecting: a malformed id is a usage error whether or not
	 * the database answers. */
	if (!cli_uuid_ok(p[0])) {
		fprintf(stderr, "pgeventd show: not an event id: %s\n", p[0]);
		return EX_USAGE;
	}

	conn = dba_connect(cfg, "pgeventd show", READ_TIMEOUT_MS, &rc);
	if (!conn)
		return rc;
	rc = 1;
	/* One snapshot for the three reads, so the deliveries shown are the
	 * event's as of the same moment. */
	ev = cli_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
	if (!ev)
		goto out;
	PQclear(ev);
	ev = cli_try_exec(conn, show_event_sql, 1, p, state, err, sizeof(err));
	if (!ev) {
		if (strcmp(state, SQLSTATE_BAD_TEXT) == 0) {
			fprintf(stderr, "pgeventd show: not an event id: %s\n", p[0]);
			rc = EX_USAGE;
		} else {
			fprintf(stderr, "pgeventd: %s\n", err);
		}
		goto out;
	}
	if (PQntuples(ev) == 0) {
		fprintf(stderr, "pgeventd: no event with id %s\n", p[0]);
		rc = EX_NOINPUT;
		goto out;
	}
	dead = cli_exec(conn, show_dead_sql, 1, p);
	del = dead ? cli_exec(conn, show_deliveries_sql, 1, p) : NULL;
	if (!del)
		goto out;
	if (json) {
		doc = json_object();
		json_object_set_new(doc, "event", cli_row_json(ev, 0));
		json_object_set_new(doc, "dead_letters", cli_rows_json(dead));
		json_object_set_new(doc, "deliveries", cli_rows_json(del));
		cli_print_json(doc);
	} else {
		print_event(ev);
		printf("\ndead letters: %d\n", PQntuples(dead));
		if (PQntuples(dead) > 0)
			cli_print_table(dead);
		printf("\ndeliveries: %d\n", PQntuples(del));
		if (PQntuples(del) > 0)
			cli_print_table(del);
	}
	rc = 0;
out:
	json_decref(doc);
	PQclear(ev);
	PQclear(dead);
	PQclear(del);
	PQfinish(conn); /* ends the read-only transaction */
	return rc;
}
