/*
 * cmd_relay.c -- the operator's commands for the webhook relay:
 *
 *   pgeventd subscriptions add --name N --url U [options]
 *   pgeventd subscriptions update NAME [--max-in-flight N] [--rate-limit N|none]
 *                                      [--ordered[=false]]
 *   pgeventd subscriptions list | disable NAME [--reason R] | enable NAME
 *   pgeventd subscriptions rotate-secret NAME [--keep-old]
 *   pgeventd deliveries list [--status S] [--subscription N] [--limit N]
 *   pgeventd deliveries retry ID... | --subscription N [--since TS]
 *
 * Output is aligned text, or --json. Secrets are printed once, when they
 * are created, and never listed.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd_relay.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "broker.h"
#include "cli.h"
#include "sign.h"

#define SQLSTATE_UNIQUE_VIOLATION "23505"

/* An HTTP field name (RFC 9110 token) that a subscription may set: not
 * one pgeventd sets itself or that would change the framing. */
static bool header_name_ok(const char *name)
{
	static const char *const reserved[] = { "content-length",    "content-type",
		                                "transfer-encoding", "host",
		                                "connection",        "expect",
		                                "user-agent",        NULL };

	if (!name[0] || strspn(name, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
	                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(name))
		return false;
	for (int i = 0; reserved[i]; i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return false;
	return true;
}

/* "a,b" -> ["a","b"] as JSON text (malloc'd). */
static char *patterns_json(const char *list)
{
	json_t *a = json_array();
	char *copy = strdup(list), *save = NULL, *out;

	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		while (*p == ' ')
			p++;
		if (*p)
			json_array_append_new(a, json_string(p));
	}
	free(copy);
	out = json_array_size(a) ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return out;
}

/* What `subscriptions add` was asked, read and checked before connecting. */
struct sub_new {
	const char *name, *url, *events, *scheme_name, *secret, *timeout, *attempts;
	const char *max_in_flight, *rate_limit; /* rate_limit NULL: none */
	const char *ordered;                    /* "t" or "f" */
	const char *id_h, *ts_h, *sig_h;
	enum sign_scheme scheme;
	bool json;
	json_t *headers; /* {"Name": "value"}: owned, freed by sub_new_release */
	char *pats;      /* --events as a JSON array: owned */
	char *generated; /* a new secret when none was given: owned */
};

static void sub_new_release(struct sub_new *s)
{
	json_decref(s->headers);
	free(s->pats);
	free(s->generated);
}

/* A broker target (NATS JetStream, Kafka: see src/broker.h): its secret
 * is the broker's password or token, which signs nothing. */
static bool url_is_broker(const char *url)
{
	return strncasecmp(url, "nats://", 7) == 0 || strncasecmp(url, "tls://", 6) == 0 ||
	       strncasecmp(url, "kafka://", 8) == 0;
}

/* Whether the url is one the subscriptions table takes (http, https or a
 * broker's, as its CHECK says): refused here, since the server's refusal
 * would quote the whole row, secret and URL included. */
static bool url_ok(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
	       url_is_broker(url);
}

/* --ordered[=BOOL] (no value: true): "t" or "f" into *out; false after
 * printing why. */
static bool ordered_arg(const char *arg, const char **out)
{
	static const struct {
		const char *word, *value;
	} words[] = {
		{ "true", "t" },  { "yes", "t" }, { "on", "t" },  { "1", "t" },
		{ "false", "f" }, { "no", "f" },  { "off", "f" }, { "0", "f" },
	};

	if (!arg) {
		*out = "t";
		return true;
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasecmp(arg, words[i].word) == 0) {
			*out = words[i].value;
			return true;
		}
	fprintf(stderr, "pgeventd: --ordered wants true or false, got %s\n", arg);
	return false;
}

/* Whether a broker url still asks for order with its query (ordered=...),
 * which the subscription's ordered column replaced (migration 0009). */
static bool url_has_ordered_param(const char *url)
{
	const char *q = strchr(url, '?');

	for (const char *p = q; p; p = strchr(p + 1, '&'))
		if (strncasecmp(p + 1, "ordered", 7) == 0 && (p[8] == '=' || p[8] == '&' || !p[8]))
			return true;
	return false;
}

/* --max-in-flight and --rate-limit (either may be NULL: not given);
 * false after printing why. */
static bool limits_ok(const char *max_in_flight, const char *rate_limit)
{
	if (max_in_flight && !cli_int_ok(max_in_flight, 1, 10000)) {
		fprintf(stderr, "pgeventd: --max-in-flight wants 1 to 10000, got %s\n",
		        max_in_flight);
		return false;
	}
	if (rate_limit && !cli_int_ok(rate_limit, 1, 100000)) {
		fprintf(stderr,
		        "pgeventd: --rate-limit wants 1 to 100000 (requests per second) or "
		        "none, got %s\n",
		        rate_limit);
		return false;
	}
	return true;
}

/*
 * Read `subscriptions add`'s options into `s` (argv[0] is "add"). Returns
 * 0, or the exit status after printing why: EX_USAGE for anything on
 * the command line that cannot work, EX_DATAERR for a secret that cannot
 * sign or no pattern. Nothing here needs the database.
 */
static int sub_add_parse(struct sub_new *s, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "url", required_argument, NULL, 'u' },
		{ "events", required_argument, NULL, 'e' },
		{ "scheme", required_argument, NULL, 's' },
		{ "secret", required_argument, NULL, 'S' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "max-in-flight", required_argument, NULL, 'F' },
		{ "rate-limit", required_argument, NULL, 'R' },
		{ "ordered", optional_argument, NULL, 'O' },
		{ "header", required_argument, NULL, 'H' },
		{ "id-header", required_argument, NULL, 'I' },
		{ "timestamp-header", required_argument, NULL, 'T' },
		{ "signature-header", required_argument, NULL, 'G' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	char err[256], *probe;
	int opt;

	*s = (struct sub_new){ .events = "*",
		               .scheme_name = "standard",
		               .timeout = "15000",
		               .attempts = "5",
		               .max_in_flight = "16",
		               .ordered = "f",
		               .headers = json_object() };
	if (!s->headers)
		return 1;
	optind = 0; /* see cli_getopt: options may follow operands */
	while ((opt = cli_getopt(argc, argv, opts, "subscriptions add")) != -1) {
		switch (opt) {
		case 'n':
			s->name = optarg;
			break;
		case 'u':
			s->url = optarg;
			break;
		case 'e':
			s->events = optarg;
			break;
		case 's':
			s->scheme_name = optarg;
			break;
		case 'S':
			s->secret = optarg;
			break;
		case 't':
			s->timeout = optarg;
			break;
		case 'm':
			s->attempts = optarg;
			break;
		case 'F':
			s->max_in_flight = optarg;
			break;
		case 'R':
			s->rate_limit = strcmp(optarg, "none") == 0 ? NULL : optarg;
			break;
		case 'O':
			if (!ordered_arg(optarg, &s->ordered))
				return EX_USAGE;
			break;
		case 'I':
			s->id_h = optarg;
			break;
		case 'T':
			s->ts_h = optarg;
			break;
		case 'G':
			s->sig_h = optarg;
			break;
		case 'j':
			s->json = true;
			break;
		case 'H': {
			char *colon = strchr(optarg, ':');

			if (!colon || colon == optarg) {
				fprintf(stderr, "pgeventd: --header wants \"Name: value\"\n");
				return EX_USAGE;
			}
			char *k = strndup(optarg, (size_t)(colon - optarg));
			const char *v = colon + 1 + strspn(colon + 1, " ");
			if (!k || !header_name_ok(k) || strpbrk(v, "\r\n")) {
				fprintf(stderr,
				        "pgeventd: --header %s: not a header pgeventd may send\n",
				        optarg);
				free(k);
				return EX_USAGE;
			}
			json_object_set_new(s->headers, k, json_string(v));
			free(k);
			break;
		}
		default:
			return EX_USAGE;
		}
	}
	if ((s->id_h && !header_name_ok(s->id_h)) || (s->ts_h && !header_name_ok(s->ts_h)) ||
	    (s->sig_h && !header_name_ok(s->sig_h))) {
		fprintf(stderr, "pgeventd: --id-header, --timestamp-header, --signature-header: "
		                "not a header pgeventd may send\n");
		return EX_USAGE;
	}
	if (!s->name || !s->url || optind < argc) {
		fprintf(stderr, "pgeventd: subscriptions add needs --name and --url\n");
		return EX_USAGE;
	}
	if (!url_ok(s->url)) {
		fprintf(stderr, "pgeventd: --url must start with http://, https://, nats://, "
		                "tls:// or kafka://\n");
		return EX_USAGE;
	}
	if (url_is_broker(s->url) && url_has_ordered_param(s->url)) {
		fprintf(stderr, "pgeventd: --url: ordered= is not a url parameter any more; "
		                "mark the subscription --ordered\n");
		return EX_USAGE;
	}
	if (url_is_broker(s->url) && !broker_url_check(s->url, err, sizeof(err))) {
		fprintf(stderr, "pgeventd: --url: %s\n", err);
		return EX_USAGE;
	}
	if (!cli_int_ok(s->timeout, 100, 600000)) {
		fprintf(stderr, "pgeventd: --timeout-ms wants 100 to 600000, got %s\n", s->timeout);
		return EX_USAGE;
	}
	if (!cli_int_ok(s->attempts, 1, 100)) {
		fprintf(stderr, "pgeventd: --max-attempts wants 1 to 100, got %s\n", s->attempts);
		return EX_USAGE;
	}
	if (!limits_ok(s->max_in_flight, s->rate_limit))
		return EX_USAGE;
	if (!sign_scheme_parse(s->scheme_name, &s->scheme)) {
		fprintf(stderr,
		        "pgeventd: --scheme must be standard, timestamped_hex or body_hex\n");
		return EX_USAGE;
	}
	s->pats = patterns_json(s->events);
	if (!s->pats) {
		fprintf(stderr, "pgeventd: --events needs at least one pattern\n");
		return EX_DATAERR;
	}
	if (!s->secret) {
		s->generated = sign_generate_secret(s->scheme);
		if (!s->generated)
			return 1;
		s->secret = s->generated;
	}
	/* A secret that cannot sign is refused now, not at the first delivery. */
	if (url_is_broker(s->url))
		return 0;
	probe = sign_header_value(s->scheme, s->secret, "probe", 0, "", 0, err, sizeof(err));
	if (!probe) {
		fprintf(stderr, "pgeventd: --secret: %s\n", err);
		return EX_DATAERR;
	}
	free(probe);
	return 0;
}

static int sub_add(PGconn *conn, const struct sub_new *s)
{
	char *hdrs = json_dumps(s->headers, JSON_COMPACT);
	const char *p[14] = { s->name,        s->url,     s->secret,   s->pats,
		              s->scheme_name, s->timeout, s->attempts, hdrs,
		              s->id_h,        s->ts_h,    s->sig_h,    s->max_in_flight,
		              s->rate_limit,  s->ordered };
	char state[CLI_SQLSTATE_LEN], err[512];
	PGresult *res;
	int rc = 1;

	if (!hdrs)
		return 1;
	res =
	    cli_try_exec(conn,
	                 "INSERT INTO subscriptions (name, url, secret, event_types,"
	                 " signature_scheme, timeout_ms, max_attempts, headers, id_header,"
	                 " timestamp_header, signature_header, max_in_flight, rate_limit, ordered)"
	                 " VALUES ($1, $2, $3, $4::jsonb, $5, $6::int, $7::int, $8::jsonb, $9,"
	                 " $10, $11, $12::int, $13::int, $14::boolean) RETURNING id, name, url,"
	                 " event_types::text AS event_types, signature_scheme, max_in_flight,"
	                 " coalesce(rate_limit::text, 'none') AS rate_limit, ordered",
	                 14, p, state, err, sizeof(err));
	if (!res) {
		if (strcmp(state, SQLSTATE_UNIQUE_VIOLATION) == 0) {
			fprintf(stderr, "pgeventd: a subscription named %s exists already\n",
			        s->name);
			rc = EX_DATAERR;
		} else {
			fprintf(stderr, "pgeventd: %s\n", err);
		}
	} else if (cli_redact_urls(res, "url")) {
		cli_print_result(res, s->json);
		if (s->generated)
			printf("secret (shown once, store it with the receiver): %s\n",
			       s->generated);
		rc = 0;
	}
	PQclear(res);
	free(hdrs);
	return rc;
}

static int changed(PGresult *res, const char *what, const char *name)
{
	int n = res ? atoi(PQcmdTuples(res)) : -1;

	PQclear(res);
	if (n < 0)
		return 1;
	if (n == 0) {
		fprintf(stderr, "pgeventd: no subscription named %s\n", name);
		return EX_DATAERR;
	}
	printf("subscription %s %s\n", name, what);
	return 0;
}

static int sub_rotate(PGconn *conn, const char *name, bool keep_old)
{
	const char *p1[1] = { name };
	PGresult *res =
	    cli_exec(conn, "SELECT signature_scheme FROM subscriptions WHERE name = $1", 1, p1);
	enum sign_scheme scheme;
	int rc;

	if (!res)
		return 1;
	if (PQntuples(res) == 0 || !sign_scheme_parse(PQgetvalue(res, 0, 0), &scheme)) {
		fprintf(stderr, "pgeventd: no subscription named %s\n", name);
		PQclear(res);
		return EX_DATAERR;
	}
	PQclear(res);
	if (keep_old && scheme == SIGN_BODY_HEX) {
		fprintf(stderr,
		        "pgeventd: body_hex signs with one secret: --keep-old is not possible\n");
		return EX_USAGE;
	}
	char *secret = sign_generate_secret(scheme);
	const char *p[3] = { name, secret, keep_old ? "t" : "f" };

	res = cli_exec(conn,
	               "UPDATE subscriptions SET secret = CASE WHEN $3::boolean"
	               " THEN $2 || ' ' || split_part(secret, ' ', 1) ELSE $2 END WHERE name = $1",
	               3, p);
	rc = changed(
	    res, keep_old ? "has a new secret (the old one still signs too)" : "has a new secret",
	    name);
	if (rc == 0)
		printf("secret (shown once, store it with the receiver): %s\n", secret);
	free(secret);
	return rc;
}

/* The subscriptions a DBA sees: URLs without their passwords (cli_redact_urls). */
static int sub_list(PGconn *conn, bool json)
{
	PGresult *res = cli_exec(
	    conn,
	    "SELECT name, CASE WHEN enabled THEN 'enabled' ELSE 'disabled' END AS state, url,"
	    " event_types::text AS event_types, signature_scheme AS scheme,"
	    " consecutive_failures AS failures, max_in_flight,"
	    " coalesce(rate_limit::text, 'none') AS rate_limit, ordered,"
	    " coalesce(to_char(paused_until, 'YYYY-MM-DD HH24:MI:SS'), '') AS paused_until,"
	    " coalesce(disabled_reason, '') AS disabled_reason"
	    " FROM subscriptions ORDER BY name",
	    0, NULL);
	int rc = 1;

	if (res && cli_redact_urls(res, "url")) {
		cli_print_result(res, json);
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/* What the verbs other than add were asked: read before connecting. */
struct sub_verb {
	const char *verb;
	const char *name;                       /* disable, enable, rotate-secret */
	const char *reason;                     /* disable */
	const char *max_in_flight, *rate_limit; /* update: NULL = unchanged */
	bool rate_none;                         /* update --rate-limit none */
	const char *ordered;                    /* update: "t", "f", NULL = unchanged */
	bool keep_old;                          /* rotate-secret */
	bool json;                              /* list */
};

/* Read a verb's options: 0, or EX_USAGE after printing why. Each verb
 * takes only its own options and its one NAME (list: none). */
static int sub_verb_parse(struct sub_verb *v, int argc, char **argv)
{
	static const struct option list_opts[] = { { "json", no_argument, NULL, 'j' },
		                                   { NULL, 0, NULL, 0 } };
	static const struct option disable_opts[] = { { "reason", required_argument, NULL, 'r' },
		                                      { NULL, 0, NULL, 0 } };
	static const struct option rotate_opts[] = { { "keep-old", no_argument, NULL, 'k' },
		                                     { NULL, 0, NULL, 0 } };
	static const struct option update_opts[] = {
		{ "max-in-flight", required_argument, NULL, 'F' },
		{ "rate-limit", required_argument, NULL, 'R' },
		{ "ordered", optional_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option no_opts[] = { { NULL, 0, NULL, 0 } };
	bool list = strcmp(argv[0], "list") == 0;
	const struct option *opts = list                                    ? list_opts
	                            : strcmp(argv[0], "disable") == 0       ? disable_opts
	                            : strcmp(argv[0], "rotate-secret") == 0 ? rotate_opts
	                            : strcmp(argv[0], "update") == 0        ? update_opts
	                                                                    : no_opts;
	char cmd[64];
	int opt;

	*v = (struct sub_verb){ .verb = argv[0], .reason = "disabled by an operator" };
	snprintf(cmd, sizeof(cmd), "subscriptions %s", argv[0]);
	optind = 0; /* see cli_getopt: options may follow operands */
	while ((opt = cli_getopt(argc, argv, opts, cmd)) != -1) {
		switch (opt) {
		case 'j':
			v->json = true;
			break;
		case 'r':
			v->reason = optarg;
			break;
		case 'k':
			v->keep_old = true;
			break;
		case 'F':
			v->max_in_flight = optarg;
			break;
		case 'R':
			v->rate_none = strcmp(optarg, "none") == 0;
			v->rate_limit = v->rate_none ? NULL : optarg;
			break;
		case 'O':
			if (!ordered_arg(optarg, &v->ordered))
				return EX_USAGE;
			break;
		default:
			return EX_USAGE;
		}
	}
	if (list ? optind != argc : optind + 1 != argc) {
		if (list || optind + 1 < argc)
			fprintf(stderr, "pgeventd %s: unexpected argument %s\n", cmd,
			        argv[list ? optind : optind + 1]);
		else
			fprintf(stderr, "pgeventd %s: which subscription? %s NAME\n", cmd, cmd);
		return EX_USAGE;
	}
	v->name = list ? NULL : argv[optind];
	if (strcmp(v->verb, "update") == 0) {
		if (!v->max_in_flight && !v->rate_limit && !v->rate_none && !v->ordered) {
			fprintf(stderr,
			        "pgeventd %s: nothing to change: --max-in-flight N, "
			        "--rate-limit N|none, --ordered[=false]\n",
			        cmd);
			return EX_USAGE;
		}
		if (!limits_ok(v->max_in_flight, v->rate_limit))
			return EX_USAGE;
	}
	return 0;
}

static int sub_change(PGconn *conn, const struct sub_verb *v)
{
	const char *p[2] = { v->name, v->reason };
	int rc;

	if (strcmp(v->verb, "update") == 0) {
		const char *u[5] = { v->name, v->max_in_flight, v->rate_limit,
			             v->rate_none || v->rate_limit ? "t" : "f", v->ordered };

		/* A new rate starts with a full bucket. Ordered applies to the
		 * deliveries queued from now on; unordered, the ones waiting
		 * behind their key's head are due at once (0009's trigger). */
		return changed(
		    cli_exec(conn,
		             "UPDATE subscriptions SET"
		             " max_in_flight = coalesce($2::int, max_in_flight),"
		             " rate_limit = CASE WHEN $4::boolean THEN $3::int ELSE rate_limit END,"
		             " rate_tokens = CASE WHEN $4::boolean THEN 0 ELSE rate_tokens END,"
		             " rate_at = CASE WHEN $4::boolean THEN NULL ELSE rate_at END,"
		             " ordered = coalesce($5::boolean, ordered)"
		             " WHERE name = $1",
		             5, u),
		    "updated", v->name);
	}

	if (strcmp(v->verb, "disable") == 0)
		return changed(
		    cli_exec(conn,
		             "UPDATE subscriptions SET enabled = false, disabled_at = now(),"
		             " disabled_reason = $2 WHERE name = $1",
		             2, p),
		    "disabled", v->name);
	rc = changed(cli_exec(conn,
	                      "UPDATE subscriptions SET enabled = true, disabled_at = NULL,"
	                      " disabled_reason = NULL, consecutive_failures = 0,"
	                      " failing_since = NULL, paused_until = NULL WHERE name = $1",
	                      1, p),
	             "enabled", v->name);
	/* Its waiting deliveries flow again at once: wake the relays. */
	if (rc == 0)
		PQclear(cli_exec(conn, "SELECT pg_notify('pgeventd_deliveries', '')", 0, NULL));
	return rc;
}

int cmd_subscriptions_main(const struct config *cfg, int argc, char **argv)
{
	static const char *const verbs[] = { "add",    "update",        "list", "disable",
		                             "enable", "rotate-secret", NULL };
	struct sub_new add = { 0 };
	struct sub_verb v = { 0 };
	bool known = false;
	PGconn *conn = NULL;
	int rc;

	for (int i = 0; argc > 1 && verbs[i]; i++)
		known = known || strcmp(argv[1], verbs[i]) == 0;
	if (!known) {
		fprintf(stderr,
		        "pgeventd: subscriptions add|update NAME|list|disable NAME|enable NAME|"
		        "rotate-secret NAME (see pgeventd help subscriptions)\n");
		return EX_USAGE;
	}
	/* Every argument is checked before connecting: a typo is a usage
	 * error (64) even when the database is down. */
	rc = strcmp(argv[1], "add") == 0 ? sub_add_parse(&add, argc - 1, argv + 1)
	                                 : sub_verb_parse(&v, argc - 1, argv + 1);
	if (rc != 0)
		goto out;
	conn = cli_connect(cfg, "pgeventd subscriptions");
	if (!conn) {
		rc = EX_UNAVAILABLE;
		goto out;
	}
	/* Without DETAIL: a refused row is quoted whole there, secret and
	 * URL with its password included. */
	PQsetErrorVerbosity(conn, PQERRORS_TERSE);
	if (strcmp(argv[1], "add") == 0)
		rc = sub_add(conn, &add);
	else if (strcmp(v.verb, "list") == 0)
		rc = sub_list(conn, v.json);
	else if (strcmp(v.verb, "rotate-secret") == 0)
		rc = sub_rotate(conn, v.name, v.keep_old);
	else
		rc = sub_change(conn, &v);
out:
	sub_new_release(&add);
	PQfinish(conn);
	return rc;
}

int cmd_deliveries_main(const struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "status", required_argument, NULL, 's' },
		{ "subscription", required_argument, NULL, 'S' },
		{ "limit", required_argument, NULL, 'l' },
		{ "since", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *verb = argc > 1 ? argv[1] : "";
	const char *status = NULL, *sub = NULL, *limit = "50", *since = NULL;
	bool json = false;
	int opt, rc = EX_USAGE;
	PGconn *conn;

	if (strcmp(verb, "list") != 0 && strcmp(verb, "retry") != 0) {
		fprintf(stderr, "pgeventd: deliveries list|retry (see pgeventd help deliveries)\n");
		return EX_USAGE;
	}
	bool list = verb[0] == 'l';

	optind = 0; /* see cli_getopt: options may follow operands */
	while ((opt = cli_getopt(argc - 1, argv + 1, opts,
	                         list ? "deliveries list" : "deliveries retry")) != -1) {
		/* each verb takes its own options only */
		if (opt == '?')
			return EX_USAGE;
		if (strchr(list ? "sSlj" : "Sij", opt) == NULL) {
			for (int i = 0; opts[i].name; i++)
				if (opts[i].val == opt)
					fprintf(
					    stderr,
					    "pgeventd deliveries %s: --%s is not an option of %s\n",
					    verb, opts[i].name, verb);
			return EX_USAGE;
		}
		switch (opt) {
		case 's':
			status = optarg;
			break;
		case 'S':
			sub = optarg;
			break;
		case 'l':
			limit = optarg;
			break;
		case 'i':
			since = optarg;
			break;
		case 'j':
			json = true;
			break;
		}
	}
	int nids = argc - 1 - optind;
	char **ids = argv + 1 + optind;

	/* Everything that can be checked without the database is, so that a
	 * typo exits 64 even when the database is down. */
	if (list && nids > 0) {
		fprintf(stderr, "pgeventd deliveries list: unexpected argument %s\n", ids[0]);
		return EX_USAGE;
	}
	if (status && strcmp(status, "pending") != 0 && strcmp(status, "in_flight") != 0 &&
	    strcmp(status, "delivered") != 0 && strcmp(status, "failed") != 0 &&
	    strcmp(status, "dead") != 0) {
		fprintf(stderr,
		        "pgeventd deliveries list: --status wants pending, in_flight, "
		        "delivered, failed or dead, got %s\n",
		        status);
		return EX_USAGE;
	}
	if (!cli_int_ok(limit, 1, 10000)) {
		fprintf(stderr, "pgeventd deliveries list: --limit wants 1 to 10000, got %s\n",
		        limit);
		return EX_USAGE;
	}
	if (!list && (nids == 0) == (sub == NULL)) {
		fprintf(stderr, "pgeventd: deliveries retry wants IDs or --subscription NAME\n");
		return EX_USAGE;
	}
	for (int i = 0; i < nids; i++)
		if (!cli_uuid_ok(ids[i])) {
			fprintf(stderr, "pgeventd deliveries retry: not a delivery id: %s\n",
			        ids[i]);
			return EX_USAGE;
		}
	conn = cli_connect(cfg, "pgeventd deliveries");
	if (!conn)
		return EX_UNAVAILABLE;
	if (list) {
		const char *p[3] = { status, sub, limit };
		PGresult *res = cli_exec(
		    conn,
		    "SELECT d.id, s.name AS subscription, d.event_type, d.status, d.attempt,"
		    " coalesce(d.last_status::text, '') AS http,"
		    " CASE WHEN d.next_attempt_at = 'infinity' THEN 'behind its key'"
		    "  ELSE to_char(d.next_attempt_at, 'YYYY-MM-DD HH24:MI:SS') END AS "
		    "next_attempt_at,"
		    " coalesce(left(d.last_error, 60), '') AS last_error"
		    " FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
		    " WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR "
		    "s.name = $2)"
		    " ORDER BY d.created_at DESC, d.id LIMIT $3::int",
		    3, p);
		rc = res ? 0 : 1;
		if (res)
			cli_print_result(res, json);
		PQclear(res);
	} else {
		/* Failed and dead deliveries start over: attempts reset, due now. */
		json_t *a = json_array();
		for (int i = 0; i < nids; i++)
			json_array_append_new(a, json_string(ids[i]));
		char *idj = json_dumps(a, JSON_COMPACT);
		json_decref(a);
		const char *p[3] = { nids ? idj : NULL, sub, since };
		PGresult *res =
		    cli_exec(conn,
		             "WITH r AS MATERIALIZED (SELECT d.id FROM deliveries d"
		             "  JOIN subscriptions s ON s.id = d.subscription_id"
		             "  WHERE d.status IN ('failed', 'dead')"
		             "  AND ($1::jsonb IS NULL OR d.id::text IN"
		             "       (SELECT jsonb_array_elements_text($1::jsonb)))"
		             "  AND ($2::text IS NULL OR s.name = $2)"
		             "  AND ($3::timestamptz IS NULL OR d.created_at >= $3::timestamptz))"
		             /* an ordered one joins the end of its key's queue (0009), in
		              * the order they were first queued */
		             " SELECT pgeventd_retry_deliveries(ARRAY(SELECT id FROM r))",
		             3, p);
		if (res) {
			printf("%s deliveries queued again\n", PQgetvalue(res, 0, 0));
			rc = 0;
			PGresult *n =
			    PQexec(conn, "NOTIFY pgeventd_deliveries"); /* wake the relays */
			PQclear(n);
		} else {
			rc = 1;
		}
		PQclear(res);
		free(idj);
	}
	PQfinish(conn);
	return rc;
}
