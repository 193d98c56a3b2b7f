/*
 * routes.h -- SQL routes: event-type patterns mapped to PostgreSQL
 * functions in the configuration (`routes = ( { events = [...]; call =
 * "schema.fn"; } )`), run inside the batch transaction like a C handler.
 *
 * The function's contract: one argument of the `events` table's row type,
 * any return value (ignored; void is usual). It returns normally for OK;
 * an error maps to an outcome by its SQLSTATE (routes_outcome). Its name
 * comes only from the configuration: routes_resolve looks it up through
 * to_regprocedure() with the name as a parameter, and the statement that
 * calls it is built from the resolved schema and name quoted with
 * PQescapeIdentifier. Event data only ever travels as the event's id, a
 * parameter: the function reads the row itself.
 */
#ifndef PGEVENTD_ROUTES_H
#define PGEVENTD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "conf.h"
#include "handlers/handler.h"

/* The SQLSTATE a routed function raises to ask for a retry:
 * RAISE EXCEPTION '...' USING ERRCODE = 'PGR01'. */
#define ROUTES_RETRY_SQLSTATE "PGR01"

struct route {
	/* First member: dispatch_run calls entry.fn (routes_call_one) with
	 * ctx->entry pointing here, which leads back to the route. name is
	 * "sql:<call>", event_type the first pattern. */
	struct handler_entry entry;
	struct strlist events; /* event-type patterns ('*' matches any run) */
	char *call;            /* the function as configured, e.g. "app.on_intro"; owned */
	char *name;            /* "sql:<call>", entry.name points here; owned */
	int line;              /* line of the route in the file */
	int index;             /* 1-based position in routes */
	/* Filled by routes_resolve: */
	char *signature; /* e.g. "app.on_intro(events)"; owned */
	char *one_sql;   /* calls it for the event whose id is $1; owned */
	char *group_sql; /* calls it for each id of $1 (uuid[]) in order; owned */
};

/* The route that takes `event_type` (the first in the file's order with
 * a pattern that matches it), or NULL; *pattern (may be NULL) gets that
 * pattern, the event's metrics label. */
const struct route *routes_match(const struct route_list *l, const char *event_type,
                                 const char **pattern);

/*
 * Look every route's function up on `conn` and build the statements that
 * call it: the function must exist with one argument of the events row
 * type, be a plain function, and the connected role must be allowed to
 * execute it (and to use its schema). False with "FILE:LINE:
 * routes[N].call: <function>: <problem>" in `err` on the first that is
 * not. `file` names the configuration file for the message.
 */
bool routes_resolve(PGconn *conn, struct route_list *l, const char *file, char *err, size_t errlen);

/* Whether two lists route the same patterns to the same functions. */
bool routes_same(const struct route_list *a, const struct route_list *b);

/* Set pgeventd_sql_route: 0 for the patterns of `old` (may be NULL), then
 * 1 for those of `cur`. */
void routes_telemetry(const struct route_list *old, const struct route_list *cur);

/* Free what the routes hold. */
void routes_release(struct route_list *l);

/* The outcome an error of SQLSTATE `state` (may be NULL) maps to:
 * HANDLER_RETRY for transient classes and ROUTES_RETRY_SQLSTATE, else
 * HANDLER_FAIL. */
enum handler_result routes_outcome(const char *state);

/* "SQLSTATE <s>: <message> (detail: ...; hint: ...)" from a failed
 * result, into buf. */
void routes_error_text(const PGresult *res, char *buf, size_t len);

/* The handler_fn of every route (entry.fn): calls the route's function
 * for `ev` behind the event's savepoint and maps an error's SQLSTATE to
 * the outcome, the message carrying SQLSTATE, message, detail and hint. */
enum handler_result routes_call_one(struct handler_ctx *ctx, const struct event *ev);

/*
 * Run the route's function for the events `ids` ("{id,...}")
 * in that order, in one statement behind one savepoint: the fast path
 * for a run of consecutive events of a batch that the same route takes.
 * True when every call returned: their writes stand. False when one
 * failed (the savepoint is rolled back: nothing of the group remains, and
 * the caller runs the events one by one to find each outcome) or the
 * connection broke (db_broken tells). *wrote says whether a
 * subtransaction was used (the savepoint, when the group wrote).
 */
bool routes_call_group(PGconn *conn, const struct route *r, const char *ids, bool *wrote);

#endif
