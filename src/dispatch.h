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
	PGconn *conn;           /* the batch connection, borrowed */
	const struct event *ev; /* borrowed */
	const char *handler;    /* handler name, for logs */
	bool savepoint;         /* a savepoint was taken before the first statement */
	bool sql_failed;        /* a statement failed: the savepoint must be rolled back */
	char error[DISPATCH_ERROR_MAX];
};

/*
 * Call the handlers `entries[0..n)` for `ev`, in order, behind one shared
 * savepoint, stopping at the first that does not return OK. On return
 * `*result` is the outcome, `*failed` the name of the handler that
 * decided it (NULL when all returned OK), and `error` the message for
 * RETRY/FAIL. A handler that returns OK after one of its statements failed
 * is turned into RETRY: its transaction state cannot be trusted.
 *
 * Returns false when the connection broke (during a handler or while
 * releasing the savepoint): the batch must be abandoned.
 */
bool dispatch_run(PGconn *conn, const struct handler_entry *const *entries, size_t n,
                  const struct event *ev, enum handler_result *result, const char **failed,
                  char *error, size_t errlen);

#endif
