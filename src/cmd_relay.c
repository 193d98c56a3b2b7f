/*
 * cmd_relay.c -- the operator's commands for the webhook relay:
 *
 *   pgeventd subscriptions add --name N --url U [options]
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

#include "cli.h"
#include "sign.h"

#define EX_USAGE_       64
#define EX_DATAERR_     65
#define EX_UNAVAILABLE_ 69

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

static int sub_add(PGconn *conn, int argc, char **argv, bool json)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "url", required_argument, NULL, 'u' },
		{ "events", required_argument, NULL, 'e' },
		{ "scheme", required_argument, NULL, 's' },
		{ "secret", required_argument, NULL, 'S' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "header", required_argument, NULL, 'H' },
		{ "id-header", required_argument, NULL, 'I' },
		{ "timestamp-header", required_argument, NULL, 'T' },
		{ "signature-header", required_argument, NULL, 'G' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *url = NULL, *events = "*", *scheme_name = "standard";
	const char *secret = NULL, *timeout = "15000", *attempts = "5";
	const char *id_h = NULL, *ts_h = NULL, *sig_h = NULL;
	json_t *headers = json_object();
	enum sign_scheme scheme;
	int opt, rc = EX_DATAERR_;

	optind = 0; /* see cli_getopt: options may follow operands */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			name = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'e':
			events = optarg;
			break;
		case 's':
			scheme_name = optarg;
			break;
		case 'S':
			secret = optarg;
			break;
		case 't':
			timeout = optarg;
			break;
		case 'm':
			attempts = optarg;
			break;
		case 'I':
			id_h = optarg;
			break;
		case 'T':
			ts_h = optarg;
			break;
		case 'G':
			sig_h = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'H': {
			char *colon = strchr(optarg, ':');

			if (!colon || colon == optarg) {
				fprintf(stderr, "pgeventd: --header wants \"Name: value\"\n");
				json_decref(headers);
				return EX_USAGE_;
			}
			char *k = strndup(optarg, (size_t)(colon - optarg));
			const char *v = colon + 1 + strspn(colon + 1, " ");
			if (!k || !header_name_ok(k) || strpbrk(v, "\r\n")) {
				fprintf(stderr,
				        "pgeventd: --header %s: not a header pgeventd may send\n",
				        optarg);
				free(k);
				json_decref(headers);
				return EX_USAGE_;
			}
			json_object_set_new(headers, k, json_string(v));
			free(k);
			break;
		}
		default:
			json_decref(headers);
			return EX_USAGE_;
		}
	}
	if ((id_h && !header_name_ok(id_h)) || (ts_h && !header_name_ok(ts_h)) ||
	    (sig_h && !header_name_ok(sig_h))) {
		fprintf(stderr, "pgeventd: --id-header, --timestamp-header, --signature-header: "
		                "not a header pgeventd may send\n");
		json_decref(headers);
		return EX_USAGE_;
	}
	if (!name || !url || optind < argc) {
		fprintf(stderr, "pgeventd: subscriptions add needs --name and --url\n");
		json_decref(headers);
		return EX_USAGE_;
	}
	if (!sign_scheme_parse(scheme_name, &scheme)) {
		fprintf(stderr,
		        "pgeventd: --scheme must be standard, timestamped_hex or body_hex\n");
		json_decref(headers);
		return EX_USAGE_;
	}
	char *generated = secret ? NULL : sign_generate_secret(scheme);
	char *pats = patterns_json(events);
	char *hdrs = json_dumps(headers, JSON_COMPACT);
	const char *p[11] = { name,     url,         secret ? secret : generated,
		              pats,     scheme_name, timeout,
		              attempts, hdrs,        id_h,
		              ts_h,     sig_h };

	if (!pats || !hdrs || (!secret && !generated)) {
		fprintf(stderr, "pgeventd: --events needs at least one pattern\n");
		goto out;
	}
	/* A secret that cannot sign is refused now, not at the first delivery. */
	char err[256];
	char *probe = sign_header_value(scheme, p[2], "probe", 0, "", 0, err, sizeof(err));
	if (!probe) {
		fprintf(stderr, "pgeventd: --secret: %s\n", err);
		goto out;
	}
	free(probe);
	PGresult *res =
	    cli_exec(conn,
	             "INSERT INTO subscriptions (name, url, secret, event_types,"
	             " signature_scheme, timeout_ms, max_attempts, headers, id_header,"
	             " timestamp_header, signature_header)"
	             " VALUES ($1, $2, $3, $4::jsonb, $5, $6::int, $7::int, $8::jsonb, $9,"
	             " $10, $11) RETURNING id, name, url, event_types::text AS event_types,"
	             " signature_scheme",
	             11, p);
	if (res) {
		cli_print_result(res, json);
		if (generated)
			printf("secret (shown once, store it with the receiver): %s\n", generated);
		PQclear(res);
		rc = 0;
	}
out:
	free(generated);
	free(pats);
	free(hdrs);
	json_decref(headers);
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
		return EX_DATAERR_;
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
		return EX_DATAERR_;
	}
	PQclear(res);
	if (keep_old && scheme == SIGN_BODY_HEX) {
		fprintf(stderr,
		        "pgeventd: body_hex signs with one secret: --keep-old is not possible\n");
		return EX_USAGE_;
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

int cmd_subscriptions_main(const struct config *cfg, int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : "";
	bool json = false;
	PGconn *conn;
	int rc = EX_USAGE_;

	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--json") == 0)
			json = true;
	if (strcmp(verb, "add") != 0 && strcmp(verb, "list") != 0 &&
	    !((strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0 ||
	       strcmp(verb, "rotate-secret") == 0) &&
	      argc >= 3)) {
		fprintf(stderr, "pgeventd: subscriptions add|list|disable NAME|enable NAME|"
		                "rotate-secret NAME (see pgeventd help subscriptions)\n");
		return EX_USAGE_;
	}
	conn = cli_connect(cfg, "pgeventd subscriptions");
	if (!conn)
		return EX_UNAVAILABLE_;
	if (strcmp(verb, "add") == 0) {
		rc = sub_add(conn, argc - 1, argv + 1, json);
	} else if (strcmp(verb, "list") == 0) {
		PGresult *res = cli_exec(
		    conn,
		    "SELECT name, CASE WHEN enabled THEN 'enabled' ELSE 'disabled' END AS state, "
		    "url,"
		    " event_types::text AS event_types, signature_scheme AS scheme,"
		    " consecutive_failures AS failures,"
		    " coalesce(to_char(paused_until, 'YYYY-MM-DD HH24:MI:SS'), '') AS paused_until,"
		    " coalesce(disabled_reason, '') AS disabled_reason"
		    " FROM subscriptions ORDER BY name",
		    0, NULL);
		if (res) {
			cli_print_result(res, json);
			PQclear(res);
			rc = 0;
		} else {
			rc = 1;
		}
	} else if ((strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0) && argc >= 3) {
		const char *reason = "disabled by an operator";

		for (int i = 3; i + 1 < argc; i++)
			if (strcmp(argv[i], "--reason") == 0)
				reason = argv[i + 1];
		const char *p[2] = { argv[2], reason };
		if (verb[0] == 'd')
			rc = changed(
			    cli_exec(
			        conn,
			        "UPDATE subscriptions SET enabled = false, disabled_at = now(),"
			        " disabled_reason = $2 WHERE name = $1",
			        2, p),
			    "disabled", argv[2]);
		else
			rc = changed(
			    cli_exec(conn,
			             "UPDATE subscriptions SET enabled = true, disabled_at = NULL,"
			             " disabled_reason = NULL, consecutive_failures = 0,"
			             " failing_since = NULL, paused_until = NULL WHERE name = $1",
			             1, p),
			    "enabled", argv[2]);
	} else if (strcmp(verb, "rotate-secret") == 0 && argc >= 3) {
		rc = sub_rotate(conn, argv[2], argc >= 4 && strcmp(argv[3], "--keep-old") == 0);
	} else {
		fprintf(stderr, "pgeventd: subscriptions add|list|disable|enable|rotate-secret "
		                "(see pgeventd help subscriptions)\n");
	}
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
	int opt, rc = EX_USAGE_;
	PGconn *conn;

	optind = 0; /* see cli_getopt: options may follow operands */
	while ((opt = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
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
		default:
			return EX_USAGE_;
		}
	}
	int nids = argc - 1 - optind;
	char **ids = argv + 1 + optind;

	if (strcmp(verb, "list") != 0 && strcmp(verb, "retry") != 0) {
		fprintf(stderr, "pgeventd: deliveries list|retry (see pgeventd help deliveries)\n");
		return EX_USAGE_;
	}
	if (strcmp(verb, "retry") == 0 && (nids == 0) == (sub == NULL)) {
		fprintf(stderr, "pgeventd: deliveries retry wants IDs or --subscription NAME\n");
		return EX_USAGE_;
	}
	conn = cli_connect(cfg, "pgeventd deliveries");
	if (!conn)
		return EX_UNAVAILABLE_;
	if (verb[0] == 'l') {
		const char *p[3] = { status, sub, limit };
		PGresult *res = cli_exec(
		    conn,
		    "SELECT d.id, s.name AS subscription, d.event_type, d.status, d.attempt,"
		    " coalesce(d.last_status::text, '') AS http,"
		    " to_char(d.next_attempt_at, 'YYYY-MM-DD HH24:MI:SS') AS next_attempt_at,"
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
		PGresult *res = cli_exec(
		    conn,
		    "UPDATE deliveries d SET status = 'pending', attempt = 0, next_attempt_at "
		    "= now(),"
		    " last_error = NULL, finished_at = NULL, locked_until = NULL"
		    " FROM subscriptions s WHERE s.id = d.subscription_id"
		    " AND d.status IN ('failed', 'dead')"
		    " AND ($1::jsonb IS NULL OR d.id::text IN"
		    "      (SELECT jsonb_array_elements_text($1::jsonb)))"
		    " AND ($2::text IS NULL OR s.name = $2)"
		    " AND ($3::timestamptz IS NULL OR d.created_at >= $3::timestamptz)",
		    3, p);
		if (res) {
			printf("%s deliveries queued again\n", PQcmdTuples(res));
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
