/*
 * db.h -- small helpers around libpq: connect with pgeventd's defaults,
 * check results, wait for a socket or a wake-up.
 */
#ifndef PGEVENTD_DB_H
#define PGEVENTD_DB_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* Size of the error buffers the modules pass to db_* and fill from them. */
#define DB_ERRLEN 1024

/*
 * Connect to `conninfo` (a key=value string, a URI or "" for the PG*
 * variables), naming the session `app_name` in pg_stat_activity.
 * On failure returns NULL with libpq's message in `err`, its passwords
 * replaced by "***" (see db_redact).
 */
PGconn *db_connect(const char *conninfo, const char *app_name, char *err, size_t errlen);

/*
 * Check `res` (which may be NULL) against `expect`. On mismatch copy the
 * server's or libpq's message, single-line, into `err`, and return false.
 * Never frees `res`.
 */
bool db_ok(PGconn *conn, const PGresult *res, ExecStatusType expect, char *err, size_t errlen);

/* Prepare `sql` as statement `name` with `nparams` text parameters;
 * false with the server's message in `err`. */
bool db_prepare(PGconn *conn, const char *name, const char *sql, int nparams, char *err,
                size_t errlen);

/* Run a statement without parameters and check it returned COMMAND_OK or
 * TUPLES_OK; the result is discarded. */
bool db_exec(PGconn *conn, const char *sql, char *err, size_t errlen);

/* True when the connection is gone (the caller should reconnect). */
bool db_broken(PGconn *conn);

/*
 * Wait until the connection's socket is readable, `wake_fd` is readable,
 * or `timeout_ms` passes (-1 = no timeout). Returns 1 if the socket is
 * readable, 0 on timeout or wake-up, -1 on poll error other than EINTR.
 */
int db_wait(PGconn *conn, int wake_fd, int timeout_ms);

/* Consume input and free every pending notification; returns how many
 * there were, or -1 if the connection broke. */
int db_drain_notifies(PGconn *conn);

/* One statement of a pipeline: a prepared one (`name`) or `sql`, with
 * text parameters, and the status it must return. */
struct db_stmt {
	const char *name; /* prepared statement, or NULL to run `sql` */
	const char *sql;
	int nparams;
	const char *const *params;
	ExecStatusType expect; /* PGRES_COMMAND_OK or PGRES_TUPLES_OK */
};

/*
 * Send `n` statements in one round trip (libpq's pipeline mode) and read
 * their results into results[0..n), which the caller PQclear()s (a slot
 * may be NULL). Returns false with the first failing statement's message
 * in `err`; statements after a failed one are not run (PostgreSQL aborts
 * the rest of the pipeline), and inside a transaction block the
 * transaction is then failed, to be rolled back by the caller.
 */
bool db_pipeline(PGconn *conn, const struct db_stmt *stmts, int n, PGresult **results, char *err,
                 size_t errlen);

/* Set the single-line error of `conn` into `err` (trailing newline removed),
 * its passwords replaced by "***" as db_redact does. */
void db_conn_error(PGconn *conn, char *err, size_t errlen);

/*
 * Copy `msg` into `out` on one line with every password `conninfo` holds
 * replaced by "***": password and sslpassword, a URI's password both as
 * written and decoded, and those of a dbname that is itself a URI or a
 * key=value string (libpq passes such a dbname to the server as it is,
 * and the server quotes it back). Every error db_* hands out is cut this
 * way, with the secrets of the connection at hand. `conninfo` may be NULL.
 */
void db_redact(const char *conninfo, const char *msg, char *out, size_t outlen);

#endif
