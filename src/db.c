/* db.c -- libpq helpers shared by the workers, migrate and the CLI. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "db.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

/* Copy a libpq message into err on one line: libpq ends messages with
 * newlines and sometimes has DETAIL lines after them. */
static void one_line(const char *msg, char *err, size_t errlen)
{
	size_t n = 0;

	if (errlen == 0)
		return;
	for (; *msg && n + 1 < errlen; msg++) {
		char c = *msg;

		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		err[n++] = c;
	}
	while (n > 0 && err[n - 1] == ' ')
		n--;
	err[n] = '\0';
}

void db_conn_error(PGconn *conn, char *err, size_t errlen)
{
	one_line(conn ? PQerrorMessage(conn) : "out of memory", err, errlen);
}

/* Server notices ("relation already exists, skipping") are not errors:
 * log them at debug level instead of letting libpq print to stderr. */
static void notice_to_log(void *arg, const char *message)
{
	char line[512];

	(void)arg;
	if (!log_enabled(LOG_DEBUG))
		return;
	one_line(message, line, sizeof(line));
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
		db_conn_error(conn, err, errlen);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, notice_to_log, NULL);
	return conn;
}

bool db_ok(PGconn *conn, const PGresult *res, ExecStatusType expect, char *err, size_t errlen)
{
	if (res && PQresultStatus(res) == expect)
		return true;
	if (res && PQresultErrorMessage(res)[0])
		one_line(PQresultErrorMessage(res), err, errlen);
	else
		db_conn_error(conn, err, errlen);
	return false;
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
