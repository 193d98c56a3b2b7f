/*
 * dispatch.h -- run one event's handler inside the batch transaction,
 * behind a savepoint that is taken only if the handler writes.
 */
#ifndef PGEVENTD_DISPATCH_H
#define PGEVENTD_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "handlers/handler.h"

#define DISPATCH_ERROR_MAX 1024

struct handler_ctx {
	PGconn *conn;                      /* the batch connection, borrowed */
	const struct event *ev;            /* borrowed */
	const char *handler;               /* handler name, for logs */
	const struct handler_entry *entry; /* the row being run, borrowed */
	int timeout_ms;                    /* handler_timeout_ms, for messages */
	double deadline; /* monotonic seconds after which no statement starts; 0 none */
	bool savepoint;  /* a savepoint was taken before the first statement */
	bool sql_failed; /* a statement failed: the savepoint must be rolled back */
	bool timed_out;  /* the time limit stopped a statement: the outcome is RETRY */
	char error[DISPATCH_ERROR_MAX];
};

/* What dispatch_run() says happened to one event. */
struct dispatch_result {
	enum handler_result result;
	const char *failed;             /* the handler that decided a RETRY/FAIL, or NULL */
	bool savepoint;                 /* a subtransaction was used (a handler wrote) */
	char error[DISPATCH_ERROR_MAX]; /* the message of a RETRY/FAIL, else "" */
};

/*
 * handler_exec() for the daemon's own handlers (SQL routes): the same,
 * except that on a statement's error the failed result is handed over in
 * *failed (the caller PQclear()s it) for its SQLSTATE and fields. *failed
 * stays NULL when no statement ran (the savepoint or the time limit).
 */
PGresult *dispatch_exec(struct handler_ctx *ctx, const char *sql, int nparams,
                        const char *const *params, PGresult **failed);

/*
 * Call the handlers `entries[0..n)` for `ev`, in order, behind one shared
 * savepoint, stopping at the first that does not return OK. `out` says
 * the outcome, which handler decided it and its message. A handler that
 * returns OK after one of its statements failed is turned into RETRY: its
 * transaction state cannot be trusted. A handler stopped by the time limit
 * (timeout_ms: no statement starts after it has passed, and the
 * connection's statement_timeout/lock_timeout stop the one running) is a
 * RETRY with a message that says so.
 *
 * Returns false when the connection broke (during a handler or while
 * rolling back the savepoint): the batch must be abandoned.
 */
bool dispatch_run(PGconn *conn, const struct handler_entry *const *entries, size_t n,
                  const struct event *ev, int timeout_ms, struct dispatch_result *out);

#endif
