/*
 * cmd_dba.c -- the DBA's commands on events: replay, dead-letters list,
 * show (status is cmd_status.c).
 *
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

/* show and dead-letters list read a few rows through indexes. */
#define READ_TIMEOUT_MS 10000
/* One UPDATE may touch many rows (the trigger runs for each); past this
 * it is cancelled and, being one statement, changes nothing. */
#define REPLAY_TIMEOUT_MS 300000
/* Replayed (or, with --dry-run, replayable) ids printed by replay. */
#define REPLAY_SAMPLE "20"

#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_BAD_TEXT       "22P02"

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
			cli_extra_argument("replay", argv[optind], cmd_replay_usage);
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
	conn = cli_connect_for(cfg, "pgeventd replay", REPLAY_TIMEOUT_MS, &rc);
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
		return cli_extra_argument("dead-letters list", argv[1 + optind],
		                          cmd_dead_letters_usage);
	if (!limit_ok(limit)) {
		fprintf(stderr, "pgeventd dead-letters list: --limit wants 1 to 10000, got %s\n",
		        limit);
		return cli_usage(cmd_dead_letters_usage);
	}
	if (!timestamp_given("dead-letters list", "--since", since))
		return cli_usage(cmd_dead_letters_usage);
	conn = cli_connect_for(cfg, "pgeventd dead-letters", READ_TIMEOUT_MS, &rc);
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
		return cli_extra_argument("show", argv[optind + 1], cmd_show_usage);
	const char *p[1] = { argv[optind] };

	/* Before connecting: a malformed id is a usage error whether or not
	 * the database answers. */
	if (!cli_uuid_ok(p[0])) {
		fprintf(stderr, "pgeventd show: not an event id: %s\n", p[0]);
		return EX_USAGE;
	}

	conn = cli_connect_for(cfg, "pgeventd show", READ_TIMEOUT_MS, &rc);
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

/* ---- keys (ordered event types) ----------------------------------------- */

const char cmd_keys_usage[] =
    "keys list [--limit N] [--json]\n"
    "       keys unpark KEY --skip | --replay\n"
    "  list: keys of ordered event types parked behind a dead-lettered head (the\n"
    "  block policy): the key, its head event, since when, and how many events wait.\n"
    "  unpark --skip lets the key go on without its head (it stays dead-lettered);\n"
    "  unpark --replay runs the head again first, then the rest in order.\n"
    "  Exit: 0 done, 1 database error or no such parked key, 64 usage.";

static const char keys_list_sql[] =
    "SELECT k.key, k.parked_event AS head, e.event_type, k.parked_at,"
    " (SELECT count(*) FROM events w WHERE w.pgeventd_key = k.key AND NOT w.processed)"
    " AS waiting, e.last_error"
    " FROM pgeventd_keys k LEFT JOIN events e ON e.id = k.parked_event"
    " WHERE k.parked_event IS NOT NULL ORDER BY k.parked_at, k.key LIMIT $1::int";

/* The dead-lettered head key $1 is parked behind, its row locked first:
 * of two unparks at once, the second waits, then finds it unparked. */
static const char keys_parked_sql[] =
    "SELECT parked_event FROM pgeventd_keys WHERE key = $1 AND parked_event IS NOT NULL"
    " FOR UPDATE";

/* Unpark $1: due now, so the next claim runs its (new) head. */
static const char keys_unpark_sql[] =
    "UPDATE pgeventd_keys SET parked_event = NULL, parked_at = NULL, due_at = now()"
    " WHERE key = $1 AND parked_event IS NOT NULL";

/* The DBA's replay of the head (events_replay does the rest): it is the
 * oldest of its key again. */
static const char keys_replay_sql[] =
    "UPDATE events SET processed = false WHERE id = $1 AND processed";

static int keys_list(PGconn *conn, const char *limit, bool json)
{
	const char *p[1] = { limit };
	PGresult *res = cli_exec(conn, keys_list_sql, 1, p);
	json_t *doc;

	if (!res)
		return 1;
	if (json) {
		doc = cli_rows_json(res);
		cli_print_json(doc);
		json_decref(doc);
	} else {
		cli_print_table(res);
	}
	PQclear(res);
	return 0;
}

/* Unpark `key` in one transaction, replaying its head first when `replay`. */
static int keys_unpark(PGconn *conn, const char *key, bool replay)
{
	const char *p[1] = { key };
	PGresult *res = NULL;
	char head[64];
	int rc = 1;

	if (!(res = cli_exec(conn, "BEGIN", 0, NULL)))
		return 1;
	PQclear(res);
	if (!(res = cli_exec(conn, keys_parked_sql, 1, p)))
		goto out;
	if (PQntuples(res) == 0) {
		fprintf(stderr, "pgeventd keys unpark: no parked key %s\n", key);
		goto out;
	}
	snprintf(head, sizeof(head), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (!(res = cli_exec(conn, keys_unpark_sql, 1, p)))
		goto out;
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		fprintf(stderr, "pgeventd keys unpark: no parked key %s\n", key);
		goto out;
	}
	PQclear(res);
	res = NULL;
	if (replay) {
		const char *hp[1] = { head };

		if (!(res = cli_exec(conn, keys_replay_sql, 1, hp)))
			goto out;
		if (strcmp(PQcmdTuples(res), "1") != 0) {
			fprintf(stderr,
			        "pgeventd keys unpark: key %s: its head %s is not a processed event"
			        " (already replayed, or deleted); nothing changed\n",
			        key, head);
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	if (!(res = cli_exec(conn, "COMMIT", 0, NULL)))
		goto out;
	printf("unparked %s: head %s %s\n", key, head,
	       replay ? "replayed, runs first" : "skipped (stays dead-lettered)");
	rc = 0;
out:
	PQclear(res);
	if (rc != 0 && PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
	return rc;
}

int cmd_keys_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "skip", no_argument, NULL, 's' },
		{ "replay", no_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *limit = "50";
	bool json = false, skip = false, replay = false, list;
	PGconn *conn;
	int opt, rc;

	if (argc < 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "unpark") != 0)) {
		if (argc >= 2)
			fprintf(stderr, "pgeventd keys: unknown verb %s\n", argv[1]);
		return cli_usage(cmd_keys_usage);
	}
	list = strcmp(argv[1], "list") == 0;
	optind = 0;
	while ((opt = cli_getopt(argc - 1, argv + 1, opts, list ? "keys list" : "keys unpark")) !=
	       -1) {
		switch (opt) {
		case 'l':
			limit = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 's':
			skip = true;
			break;
		case 'r':
			replay = true;
			break;
		default:
			return cli_usage(cmd_keys_usage);
		}
	}
	if (list && (skip || replay || optind < argc - 1))
		return cli_usage(cmd_keys_usage);
	if (!list && (skip == replay || json || optind != argc - 2)) {
		fprintf(stderr, "pgeventd keys unpark: give one KEY and one of --skip, --replay\n");
		return cli_usage(cmd_keys_usage);
	}
	if (!limit_ok(limit)) {
		fprintf(stderr, "pgeventd keys list: --limit wants 1 to 10000, got %s\n", limit);
		return cli_usage(cmd_keys_usage);
	}
	conn = cli_connect_for(cfg, "pgeventd keys", READ_TIMEOUT_MS, &rc);
	if (!conn)
		return rc;
	rc = list ? keys_list(conn, limit, json) : keys_unpark(conn, argv[1 + optind], replay);
	PQfinish(conn);
	return rc;
}
