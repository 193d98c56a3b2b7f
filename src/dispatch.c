/* dispatch.c -- the handler API (handler_exec & co.) and one event's run. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"

#define SAVEPOINT_NAME "pgeventd_event"

PGresult *handler_exec(struct handler_ctx *ctx, const char *sql, int nparams,
                       const char *const *params)
{
	PGresult *res;
	ExecStatusType st;

	if (ctx->sql_failed) {
		snprintf(ctx->error, sizeof(ctx->error),
		         "handler ran a statement after a failed one");
		return NULL;
	}
	if (!ctx->savepoint) {
		if (!db_exec(ctx->conn, "SAVEPOINT " SAVEPOINT_NAME, ctx->error,
		             sizeof(ctx->error))) {
			ctx->sql_failed = true;
			return NULL;
		}
		ctx->savepoint = true;
	}
	res = PQexecParams(ctx->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	db_ok(ctx->conn, res, PGRES_COMMAND_OK, ctx->error, sizeof(ctx->error));
	PQclear(res);
	ctx->sql_failed = true;
	return NULL;
}

static void set_error(struct handler_ctx *ctx, const char *fmt, va_list ap)
{
	vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
}

enum handler_result handler_error(struct handler_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(ctx, fmt, ap);
	va_end(ap);
	return HANDLER_FAIL;
}

enum handler_result handler_retry(struct handler_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(ctx, fmt, ap);
	va_end(ap);
	return HANDLER_RETRY;
}

const char *handler_json_type(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
		return "null";
	}
	return "unknown";
}

void handler_log(struct handler_ctx *ctx, const char *msg, const char *key, const char *value)
{
	log_kv(LOG_INFO, msg, "event_id", ctx->ev->id, "event_type", ctx->ev->event_type, "handler",
	       ctx->handler, key, value, NULL);
}

bool dispatch_run(PGconn *conn, const struct handler_entry *const *entries, size_t n,
                  const struct event *ev, enum handler_result *result, const char **failed,
                  char *error, size_t errlen)
{
	struct handler_ctx ctx = { .conn = conn, .ev = ev };
	enum handler_result r = HANDLER_OK;

	*failed = NULL;
	for (size_t i = 0; i < n && r == HANDLER_OK; i++) {
		const struct handler_entry *entry = entries[i];

		ctx.handler = entry->name;
		r = entry->fn(&ctx, ev);
		if (r == HANDLER_OK && ctx.sql_failed) {
			r = HANDLER_RETRY;
			if (!ctx.error[0])
				snprintf(ctx.error, sizeof(ctx.error), "a statement failed");
		}
		if (r != HANDLER_OK && r != HANDLER_RETRY)
			r = HANDLER_FAIL;
		if (r != HANDLER_OK && !ctx.error[0])
			snprintf(ctx.error, sizeof(ctx.error),
			         "handler %s returned %s without a message", entry->name,
			         r == HANDLER_RETRY ? "retry" : "fail");
		if (r != HANDLER_OK)
			*failed = entry->name;
	}
	snprintf(error, errlen, "%s", r == HANDLER_OK ? "" : ctx.error);
	*result = r;

	if (db_broken(conn))
		return false;
	if (!ctx.savepoint)
		return true;
	char ignore[256];
	/* A savepoint that is not rolled back needs no RELEASE: the next
	 * event's SAVEPOINT of the same name shadows it, ROLLBACK TO finds the
	 * newest, and COMMIT keeps them all. That saves a round trip per event
	 * that writes. (Released or not, a subtransaction that wrote keeps its
	 * subxid until the commit.) */
	if (r == HANDLER_OK)
		return true;
	return db_exec(conn, "ROLLBACK TO SAVEPOINT " SAVEPOINT_NAME, ignore, sizeof(ignore)) &&
	       db_exec(conn, "RELEASE SAVEPOINT " SAVEPOINT_NAME, ignore, sizeof(ignore));
}
