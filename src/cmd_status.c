/*
 * cmd_status.c -- pgeventd status [--json]: the queue, recent throughput,
 * dead letters and deliveries, each figure read through an index with its
 * own time limit, so a huge table shows "unknown" rather than a hung screen.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd_dba.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figures.h"

/* status shows what it could get: each figure gives up after this. */
#define STATUS_TIMEOUT_MS 5000

#define SQLSTATE_QUERY_CANCELED "57014"

const char cmd_status_usage[] =
    "status [--json]\n"
    "  The queue (pending events: due now or scheduled later, the oldest one's age,\n"
    "  how many are retrying), events processed in the last hour, dead letters by\n"
    "  event type, keys of ordered event types (parked ones named: `pgeventd keys`)\n"
    "  and webhook deliveries by status (delivered ones counted up to 100000, then\n"
    "  estimated; and those of the last hour). Each figure reads an index; one\n"
    "  that takes more than 5 s is shown as unknown (null in --json, named in\n"
    "  \"timed_out\").\n"
    "  Exit: 0 shown, 1 database error, 64 usage, 69 database unavailable.";

/* ---- status -------------------------------------------------------------- */

/* The keys figures_status_queue_sql fills, null when it timed out. */
static const char *const status_queue_keys[] = { "pending",
	                                         "due_now",
	                                         "scheduled_later",
	                                         "retrying",
	                                         "oldest_pending_created_at",
	                                         "oldest_pending_age_s",
	                                         NULL };

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
		printf("  %-*s %lld\n", w, label, cli_int_of(v));
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
		       cli_int_of(pending), cli_int_of(json_object_get(ev, "due_now")),
		       cli_int_of(json_object_get(ev, "scheduled_later")));
		if (json_is_string(oldest)) {
			format_age(cli_int_of(json_object_get(ev, "oldest_pending_age_s")), age,
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
		       cli_int_of(json_object_get(dead, "total")));
		json_array_foreach(types, i, t)
		{
			printf("  %-*s %lld (latest %s)\n", w,
			       json_string_value(json_object_get(t, "event_type")),
			       cli_int_of(json_object_get(t, "count")),
			       screen_time(json_object_get(t, "latest"), when, sizeof(when)));
		}
	}

	const json_t *keys = json_object_get(doc, "ordered_keys");
	if (json_is_null(keys)) {
		printf("%-*s %s\n", w + 2, "ordered keys", STATUS_UNKNOWN);
	} else {
		const json_t *pk;

		printf("%-*s %lld (%lld waiting on a retry, %lld parked)\n", w + 2, "ordered keys",
		       cli_int_of(json_object_get(keys, "queued")),
		       cli_int_of(json_object_get(keys, "waiting")),
		       cli_int_of(json_object_get(keys, "parked")));
		json_array_foreach(json_object_get(keys, "parked_keys"), i, pk)
		{
			printf("  parked %s (head %s, since %s)\n",
			       json_string_value(json_object_get(pk, "key")),
			       json_string_value(json_object_get(pk, "head")),
			       json_string_value(json_object_get(pk, "parked_at")));
		}
	}

	printf("deliveries\n");
	for (int k = 0; statuses[k]; k++) {
		const json_t *v = json_is_null(del) ? del : json_object_get(del, statuses[k]);

		if (strcmp(statuses[k], "delivered") == 0 &&
		    json_is_true(json_object_get(del, "delivered_estimated")))
			printf(
			    "  %-*s about %lld (counted up to %d, then the planner's estimate)\n",
			    w, statuses[k], cli_int_of(v), FIGURES_EXACT_UP_TO);
		else
			print_figure(w, statuses[k], v);
		if (strcmp(statuses[k], "delivered") == 0)
			print_figure(
			    w, "delivered, last hour",
			    json_is_null(del) ? del : json_object_get(del, "delivered_last_hour"));
	}
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
		return cli_extra_argument("status", argv[optind], cmd_status_usage);
	conn = cli_connect_for(cfg, "pgeventd status", STATUS_TIMEOUT_MS, &rc);
	if (!conn)
		return rc;
	rc = 1;
	doc = json_object();
	events = json_object();
	timed_out = json_array();
	json_object_set(doc, "events", events);

	if ((got = status_figure(conn, figures_status_queue_sql, &res)) < 0)
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

	if ((got = status_figure(conn, figures_status_processed_sql, &res)) < 0)
		goto out;
	json_object_set_new(events, "processed_last_hour",
	                    got ? cli_value_json(res, 0, 0) : json_null());
	if (!got)
		json_array_append_new(timed_out, json_string("processed_last_hour"));
	PQclear(res);

	if ((got = status_figure(conn, figures_status_dead_letters_sql, &res)) < 0)
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

	if ((got = status_figure(conn, figures_status_keys_sql, &res)) < 0)
		goto out;
	if (got) {
		json_t *keys = cli_row_json(res, 0);
		json_t *list = json_loads(PQgetvalue(res, 0, 3), 0, NULL);

		json_object_set_new(keys, "parked_keys", list ? list : json_array());
		json_object_set_new(doc, "ordered_keys", keys);
	} else {
		json_object_set_new(doc, "ordered_keys", json_null());
		json_array_append_new(timed_out, json_string("ordered_keys"));
	}
	PQclear(res);

	if ((got = status_figure(conn, figures_status_deliveries_sql, &res)) < 0)
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
