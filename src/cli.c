/* cli.c -- the operator commands' shared plumbing: connection, statements, tables and JSON. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>
#include <errno.h>

#include "db.h"
#include "redact.h"
#include "util.h"

/* Type OIDs from PostgreSQL's catalog (pg_type.dat): fixed since they
 * were assigned, and catalog/pg_type_d.h is a server header. */
#define OID_BOOL        16
#define OID_INT8        20
#define OID_INT2        21
#define OID_INT4        23
#define OID_OID         26
#define OID_JSON        114
#define OID_FLOAT4      700
#define OID_FLOAT8      701
#define OID_TIMESTAMP   1114
#define OID_TIMESTAMPTZ 1184
#define OID_JSONB       3802

/* Longest cell cli_print_table shows, in characters. */
#define CELL_MAX 60

PGconn *cli_connect(const struct config *cfg, const char *app_name)
{
	char err[512];
	PGconn *conn = db_connect(conf_conninfo(cfg), app_name, err, sizeof(err));

	if (!conn)
		fprintf(stderr, "pgeventd: cannot connect to the database: %s\n", err);
	return conn;
}

bool cli_session(PGconn *conn, int statement_timeout_ms)
{
	char ms[16];
	const char *p[1] = { ms };
	PGresult *res;

	if (PQsetClientEncoding(conn, "UTF8") != 0) {
		char err[512];

		db_conn_error(conn, err, sizeof(err));
		fprintf(stderr, "pgeventd: %s\n", err);
		return false;
	}
	snprintf(ms, sizeof(ms), "%d", statement_timeout_ms);
	res = cli_exec(conn,
	               "SELECT set_config('datestyle', 'ISO', false),"
	               " set_config('statement_timeout', $1, false)",
	               1, p);
	PQclear(res);
	return res != NULL;
}

PGresult *cli_try_exec(PGconn *conn, const char *sql, int n, const char *const *params,
                       char sqlstate[CLI_SQLSTATE_LEN], char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	const char *state;

	sqlstate[0] = '\0';
	if (db_ok(conn, res, PGRES_TUPLES_OK, err, errlen) ||
	    (res && PQresultStatus(res) == PGRES_COMMAND_OK))
		return res;
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state)
		snprintf(sqlstate, CLI_SQLSTATE_LEN, "%s", state);
	PQclear(res);
	return NULL;
}

PGresult *cli_exec(PGconn *conn, const char *sql, int n, const char *const *params)
{
	char err[512], state[CLI_SQLSTATE_LEN];
	PGresult *res = cli_try_exec(conn, sql, n, params, state, err, sizeof(err));

	if (!res)
		fprintf(stderr, "pgeventd: %s\n", err);
	return res;
}

void cli_print_result(const PGresult *res, bool json)
{
	int rows = PQntuples(res), cols = PQnfields(res);

	if (json) {
		json_t *a = json_array();

		for (int r = 0; r < rows; r++) {
			json_t *o = json_object();

			for (int c = 0; c < cols; c++)
				json_object_set_new(o, PQfname(res, c),
				                    PQgetisnull(res, r, c)
				                        ? json_null()
				                        : json_string(PQgetvalue(res, r, c)));
			json_array_append_new(a, o);
		}
		cli_print_json(a);
		json_decref(a);
		return;
	}
	int *w = calloc((size_t)cols, sizeof(int));

	if (!w)
		return;
	for (int c = 0; c < cols; c++) {
		w[c] = (int)strlen(PQfname(res, c));
		for (int r = 0; r < rows; r++)
			if (PQgetlength(res, r, c) > w[c])
				w[c] = PQgetlength(res, r, c);
	}
	for (int c = 0; c < cols; c++)
		printf("%-*s%s", c + 1 < cols ? w[c] : 0, PQfname(res, c),
		       c + 1 < cols ? "  " : "\n");
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++)
			printf("%-*s%s", c + 1 < cols ? w[c] : 0, PQgetvalue(res, r, c),
			       c + 1 < cols ? "  " : "\n");
	if (rows == 0)
		printf("(none)\n");
	free(w);
}

/* A cell as people read it (malloc'd): see cli_print_table. */
static char *table_cell(const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	Oid type = PQftype(res, col);
	size_t len = strlen(v), cut = len;
	int chars = 0;
	char *out;

	if (PQgetisnull(res, row, col))
		return strdup("-");
	/* ISO style (cli_session): "YYYY-MM-DD HH:MM:SS.ffffff+TZ" */
	if ((type == OID_TIMESTAMPTZ || type == OID_TIMESTAMP) && len >= 19 && v[10] == ' ')
		return strndup(v, 19);
	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)v[i] & 0xC0) == 0x80)
			continue;
		if (chars == CELL_MAX - 3)
			cut = i;
		if (++chars > CELL_MAX)
			break;
	}
	if (chars <= CELL_MAX)
		cut = len;
	out = malloc(cut + 4);
	if (!out)
		return NULL;
	memcpy(out, v, cut);
	strcpy(out + cut, cut < len ? "..." : "");
	for (char *p = out; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	return out;
}

void cli_print_table(const PGresult *res)
{
	int rows = PQntuples(res), cols = PQnfields(res);
	char **cells = calloc((size_t)rows * (size_t)cols + 1, sizeof(char *));
	int *w = calloc((size_t)cols + 1, sizeof(int));

	if (!cells || !w)
		goto out;
	for (int c = 0; c < cols; c++)
		w[c] = (int)util_utf8_chars(PQfname(res, c));
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			char *cell = table_cell(res, r, c);

			if (!cell)
				goto out;
			cells[r * cols + c] = cell;
			if ((int)util_utf8_chars(cell) > w[c])
				w[c] = (int)util_utf8_chars(cell);
		}
	for (int r = -1; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			const char *s = r < 0 ? PQfname(res, c) : cells[r * cols + c];

			if (c + 1 < cols)
				printf("%s%*s  ", s, w[c] - (int)util_utf8_chars(s), "");
			else
				printf("%s\n", s);
		}
	if (rows == 0)
		printf("(none)\n");
out:
	if (cells)
		for (int i = 0; i < rows * cols; i++)
			free(cells[i]);
	free(cells);
	free(w);
}

/* PostgreSQL's ISO timestamp "2026-11-23 23:06:21.05+00" as RFC 3339
 * "2026-11-23T23:06:21.05+00:00"; other text (infinity) as it is. */
static json_t *rfc3339(const char *v)
{
	char buf[64];
	size_t len = strlen(v);
	const char *zone = len > 19 ? strpbrk(v + 19, "+-") : NULL;

	if (len < 19 || len + 4 > sizeof(buf) || v[10] != ' ')
		return json_string(v);
	memcpy(buf, v, len + 1);
	buf[10] = 'T';
	if (zone && strlen(zone) == 3)
		strcat(buf, ":00");
	return json_string(buf);
}

json_t *cli_value_json(const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	json_t *j = NULL;

	if (PQgetisnull(res, row, col))
		return json_null();
	switch (PQftype(res, col)) {
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return json_integer(strtoll(v, NULL, 10));
	case OID_FLOAT4:
	case OID_FLOAT8:
		j = json_real(strtod(v, NULL)); /* NULL for NaN and infinities */
		break;
	case OID_JSON:
	case OID_JSONB:
		j = json_loads(v, JSON_DECODE_ANY, NULL);
		break;
	case OID_TIMESTAMPTZ:
		j = rfc3339(v);
		break;
	default:
		break;
	}
	return j ? j : json_string(v);
}

json_t *cli_row_json(const PGresult *res, int row)
{
	json_t *o = json_object();

	for (int c = 0; c < PQnfields(res); c++)
		json_object_set_new(o, PQfname(res, c), cli_value_json(res, row, c));
	return o;
}

json_t *cli_rows_json(const PGresult *res)
{
	json_t *a = json_array();

	for (int r = 0; r < PQntuples(res); r++)
		json_array_append_new(a, cli_row_json(res, r));
	return a;
}

void cli_print_json(const json_t *doc)
{
	json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

int cli_getopt(int argc, char **argv, const struct option *opts, const char *cmd)
{
	int opt;

	opterr = 0; /* the messages below name the command, not argv[0] */
	opt = getopt_long(argc, argv, ":", opts, NULL);
	if (opt != '?' && opt != ':')
		return opt;
	if (optind > 0 && optind <= argc && strncmp(argv[optind - 1], "--", 2) == 0)
		fprintf(stderr, "pgeventd %s: %s %s\n", cmd,
		        opt == ':' ? "option needs a value:" : "unknown option", argv[optind - 1]);
	else
		fprintf(stderr, "pgeventd %s: unknown option -%c\n", cmd, optopt ? optopt : '?');
	return '?';
}

/* Mirrors PostgreSQL's string_to_uuid (src/backend/utils/adt/uuid.c). */
bool cli_uuid_ok(const char *s)
{
	bool braces = s[0] == '{';

	if (braces)
		s++;
	for (int i = 0; i < 16; i++) {
		if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]))
			return false;
		s += 2;
		if (s[0] == '-' && i % 2 == 1 && i < 15)
			s++;
	}
	if (braces && *s++ != '}')
		return false;
	return *s == '\0';
}

bool cli_int_ok(const char *s, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && n >= min && n <= max;
}

bool cli_redact_urls(PGresult *res, const char *column)
{
	int col = PQfnumber(res, column);

	if (col < 0)
		return true;
	for (int r = 0; r < PQntuples(res); r++) {
		char *shown;

		if (PQgetisnull(res, r, col))
			continue;
		shown = redact_url(PQgetvalue(res, r, col));
		/* PQsetvalue copies the value into the result's own storage. */
		if (!shown || !PQsetvalue(res, r, col, shown, (int)strlen(shown))) {
			free(shown);
			fprintf(stderr, "pgeventd: out of memory\n");
			return false;
		}
		free(shown);
	}
	return true;
}

int cli_usage(const char *usage)
{
	fprintf(stderr, "usage: pgeventd [-c FILE] %s\n", usage);
	return EX_USAGE;
}

/* "pgeventd CMD: unexpected argument X" and the usage: for stray operands. */
int cli_extra_argument(const char *cmd, const char *arg, const char *usage)
{
	fprintf(stderr, "pgeventd %s: unexpected argument %s\n", cmd, arg);
	return cli_usage(usage);
}

/* Connect and set the session up for a command; NULL (already told) means
 * exit `*rc`. */
PGconn *cli_connect_for(const struct config *cfg, const char *app_name, int timeout_ms, int *rc)
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

long long cli_int_of(const json_t *v)
{
	return (long long)json_integer_value(v);
}
