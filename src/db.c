/* db.c -- libpq helpers shared by the workers, migrate and the CLI. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "db.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- secrets kept out of messages ---------------------------------------- */

/*
 * The passwords a connection string holds, so that they can be cut out
 * of any message: libpq never prints the password itself, but the server
 * quotes a database name, and libpq passes a dbname holding a URI such as
 * "postgresql://app:secret@db/x" on as it is ("database ... does not
 * exist"). Pointers into the parsed options or the conninfo text.
 */
#define SECRETS_MAX 16
struct secrets {
	const char *v[SECRETS_MAX];
	size_t len[SECRETS_MAX];
	int n;
	PQconninfoOption *parsed[4]; /* owned: freed by secrets_release */
	int nparsed;
};

static void secrets_add(struct secrets *s, const char *v, size_t len)
{
	if (len > 0 && s->n < SECRETS_MAX) {
		s->v[s->n] = v;
		s->len[s->n++] = len;
	}
}

static bool is_uri(const char *ci)
{
	return strncmp(ci, "postgresql://", 13) == 0 || strncmp(ci, "postgres://", 11) == 0;
}

/* A URI's password as written (maybe percent-encoded): libpq reads the
 * user info up to the first '@' or '/' after the scheme. */
static void secrets_add_uri_password(struct secrets *s, const char *uri)
{
	const char *p = strstr(uri, "://") + 3, *end = p + strcspn(p, "@/"), *colon;

	if (*end != '@')
		return;
	colon = memchr(p, ':', (size_t)(end - p));
	if (colon)
		secrets_add(s, colon + 1, (size_t)(end - colon - 1));
}

static void secrets_add_conninfo(struct secrets *s, const char *ci, int depth);

static void secrets_add_options(struct secrets *s, const PQconninfoOption *opts, int depth)
{
	for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0)
			secrets_add(s, o->val, strlen(o->val));
		else if (strcmp(o->keyword, "dbname") == 0 && depth < 3 &&
		         (is_uri(o->val) || strchr(o->val, '=')))
			secrets_add_conninfo(s, o->val, depth + 1);
	}
}

/* What `ci` (a URI or key=value string, maybe nested in a dbname) hides. */
static void secrets_add_conninfo(struct secrets *s, const char *ci, int depth)
{
	PQconninfoOption *opts;

	if (!ci || !ci[0])
		return;
	if (is_uri(ci))
		secrets_add_uri_password(s, ci);
	if (s->nparsed == (int)(sizeof(s->parsed) / sizeof(s->parsed[0])))
		return;
	opts = PQconninfoParse(ci, NULL);
	if (!opts)
		return;
	s->parsed[s->nparsed++] = opts;
	secrets_add_options(s, opts, depth);
}

/* Both sources: the conninfo as configured, and what the connection
 * actually used (also a password from PGPASSWORD or ~/.pgpass). */
static void secrets_init(struct secrets *s, const char *conninfo, PGconn *conn)
{
	memset(s, 0, sizeof(*s));
	secrets_add_conninfo(s, conninfo, 0);
	if (conn && s->nparsed < (int)(sizeof(s->parsed) / sizeof(s->parsed[0]))) {
		PQconninfoOption *opts = PQconninfo(conn);

		if (opts) {
			s->parsed[s->nparsed++] = opts;
			secrets_add_options(s, opts, 0);
		}
	}
}

static void secrets_release(struct secrets *s)
{
	for (int i = 0; i < s->nparsed; i++)
		PQconninfoFree(s->parsed[i]);
	s->nparsed = 0;
	s->n = 0;
}

/* The longest secret found at `p`, or 0. */
static size_t secret_at(const struct secrets *s, const char *p)
{
	size_t best = 0;

	for (int i = 0; i < s->n; i++)
		if (s->len[i] > best && strncmp(p, s->v[i], s->len[i]) == 0)
			best = s->len[i];
	return best;
}

/* Copy a libpq message into err on one line (libpq ends messages with
 * newlines and sometimes has DETAIL lines after them), each secret of `s`
 * (may be NULL) replaced by "***". */
static void one_line(const char *msg, const struct secrets *s, char *err, size_t errlen)
{
	size_t n = 0;

	if (errlen == 0)
		return;
	while (*msg && n + 1 < errlen) {
		size_t skip = s ? secret_at(s, msg) : 0;
		char c = *msg;

		if (skip) {
			for (int i = 0; i < 3 && n + 1 < errlen; i++)
				err[n++] = '*';
			msg += skip;
			continue;
		}
		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		err[n++] = c;
		msg++;
	}
	while (n > 0 && err[n - 1] == ' ')
		n--;
	err[n] = '\0';
}

void db_redact(const char *conninfo, const char *msg, char *out, size_t outlen)
{
	struct secrets s;

	secrets_init(&s, conninfo, NULL);
	one_line(msg, &s, out, outlen);
	secrets_release(&s);
}

/* The message of `conn` with what its conninfo (and `conninfo`) hides cut out. */
static void conn_message(PGconn *conn, const char *conninfo, const char *msg, char *err,
                         size_t errlen)
{
	struct secrets s;

	secrets_init(&s, conninfo, conn);
	one_line(msg, &s, err, errlen);
	secrets_release(&s);
}

void db_conn_error(PGconn *conn, char *err, size_t errlen)
{
	if (!conn)
		one_line("out of memory", NULL, err, errlen);
	else
		conn_message(conn, NULL, PQerrorMessage(conn), err, errlen);
}

/* Server notices ("relation already exists, skipping") are not errors:
 * log them at debug level instead of letting libpq print to stderr. */
static void notice_to_log(void *arg, const char *message)
{
	char line[512];

	if (!log_enabled(LOG_DEBUG))
		return;
	conn_message(arg, NULL, message, line, sizeof(line));
	log_kv(LOG_DEBUG, "server notice", "message", line, NULL);
}

PGconn *db_connect(const char *conninfo, const char *app_name, char *err, size_t errlen)
{
	/* Our defaults come first: the expanded conninfo given as dbname
	 * comes later and overrides them where the operator set them. The
	 * keepalive and tcp_user_timeout settings turn a silent network
	 * partition into an error within about 30 s instead of minutes. */
	const char *keys[] = { "connect_timeout",
		               "keepalives",
		               "keepalives_idle",
		               "keepalives_interval",
		               "keepalives_count",
		               "tcp_user_timeout",
		               "fallback_application_name",
		               "application_name",
		               "dbname",
		               NULL };
	const char *vals[] = { "10",    "1",        "10",     "5",      "3",
		               "30000", "pgeventd", app_name, conninfo, NULL };
	PGconn *conn;
	char *perr = NULL;
	PQconninfoOption *opts;

	/* libpq quotes a malformed connection string in its error, and it may
	 * hold a password: never pass that message on. */
	if (conninfo && conninfo[0]) {
		opts = PQconninfoParse(conninfo, &perr);
		if (!opts) {
			snprintf(err, errlen,
			         "invalid connection string (not shown: it may hold a "
			         "password)");
			PQfreemem(perr);
			return NULL;
		}
		PQconninfoFree(opts);
	}
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		if (conn)
			conn_message(conn, conninfo, PQerrorMessage(conn), err, errlen);
		else
			one_line("out of memory", NULL, err, errlen);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, notice_to_log, conn);
	return conn;
}

bool db_ok(PGconn *conn, const PGresult *res, ExecStatusType expect, char *err, size_t errlen)
{
	if (res && PQresultStatus(res) == expect)
		return true;
	if (res && PQresultErrorMessage(res)[0])
		conn_message(conn, NULL, PQresultErrorMessage(res), err, errlen);
	else
		db_conn_error(conn, err, errlen);
	return false;
}

bool db_prepare(PGconn *conn, const char *name, const char *sql, int nparams, char *err,
                size_t errlen)
{
	PGresult *res = PQprepare(conn, name, sql, nparams, NULL);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, errlen);

	PQclear(res);
	return ok;
}

bool db_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = res && (PQresultStatus(res) == PGRES_COMMAND_OK ||
	                  PQresultStatus(res) == PGRES_TUPLES_OK);

	if (!ok)
		db_ok(conn, res, PGRES_COMMAND_OK, err, errlen);
	PQclear(res);
	return ok;
}

bool db_broken(PGconn *conn)
{
	return !conn || PQstatus(conn) != CONNECTION_OK;
}

int db_wait(PGconn *conn, int wake_fd, int timeout_ms)
{
	struct pollfd fds[2];
	int n = 0, sock = conn ? PQsocket(conn) : -1;

	if (sock >= 0) {
		fds[n].fd = sock;
		fds[n].events = POLLIN;
		n++;
	}
	if (wake_fd >= 0) {
		fds[n].fd = wake_fd;
		fds[n].events = POLLIN;
		n++;
	}
	int rc = poll(fds, (nfds_t)n, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : -1;
	if (rc > 0 && sock >= 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)))
		return 1;
	return 0;
}

int db_drain_notifies(PGconn *conn)
{
	PGnotify *n;
	int count = 0;

	if (!PQconsumeInput(conn))
		return -1;
	while ((n = PQnotifies(conn)) != NULL) {
		PQfreemem(n);
		count++;
	}
	return count;
}

/* Read the results of one pipelined statement (up to its terminating
 * NULL). Keeps the first result; false if none came. */
static bool pipeline_collect(PGconn *conn, PGresult **out)
{
	PGresult *r;

	*out = NULL;
	while ((r = PQgetResult(conn)) != NULL) {
		if (!*out)
			*out = r;
		else
			PQclear(r);
	}
	return *out != NULL;
}

bool db_pipeline(PGconn *conn, const struct db_stmt *stmts, int n, PGresult **results, char *err,
                 size_t errlen)
{
	bool ok = true, sent = true;
	PGresult *sync;
	int i;

	for (i = 0; i < n; i++)
		results[i] = NULL;
	if (!PQenterPipelineMode(conn)) {
		db_conn_error(conn, err, errlen);
		return false;
	}
	for (i = 0; i < n && sent; i++) {
		const struct db_stmt *s = &stmts[i];

		sent = s->name ? PQsendQueryPrepared(conn, s->name, s->nparams, s->params, NULL,
		                                     NULL, 0)
		               : PQsendQueryParams(conn, s->sql, s->nparams, NULL, s->params, NULL,
		                                   NULL, 0);
	}
	if (!sent || !PQpipelineSync(conn)) {
		db_conn_error(conn, err, errlen);
		/* Nothing can be read back in a known state: the caller sees a
		 * failure and the connection is reset if it broke. */
		PQexitPipelineMode(conn);
		return false;
	}
	for (i = 0; i < n; i++) {
		if (!pipeline_collect(conn, &results[i])) {
			if (ok)
				db_conn_error(conn, err, errlen);
			ok = false;
			break;
		}
		if (ok && !db_ok(conn, results[i], stmts[i].expect, err, errlen))
			ok = false;
	}
	/* The sync's own result closes the pipeline. */
	while ((sync = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(sync);

		PQclear(sync);
		if (st == PGRES_PIPELINE_SYNC)
			break;
	}
	if (!PQexitPipelineMode(conn) && ok) {
		db_conn_error(conn, err, errlen);
		ok = false;
	}
	return ok;
}
