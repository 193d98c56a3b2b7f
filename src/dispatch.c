/* dispatch.c -- the daemon's side of the handler API declared in
 * handlers/handler.h (handler_exec & co.), and one event's run behind its
 * savepoint. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define SAVEPOINT_NAME "pgeventd_event"

/* A statement stopped by the session's statement_timeout or lock_timeout
 * (both set to handler_timeout_ms on the worker's connection) is the
 * handler time limit at work: say so, and make it a RETRY. */
static void note_timeout(struct handler_ctx *ctx, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char head[96];
	size_t hl, el;

	if (!state || (strcmp(state, "57014") != 0 && strcmp(state, "55P03") != 0))
		return;
	ctx->timed_out = true;
	snprintf(head, sizeof(head),
	         "handler time limit exceeded (handler_timeout_ms = %d): ", ctx->timeout_ms);
	hl = strlen(head);
	el = strlen(ctx->error);
	if (hl + el >= sizeof(ctx->error))
		el = sizeof(ctx->error) - hl - 1;
	memmove(ctx->error + hl, ctx->error, el);
	memcpy(ctx->error, head, hl);
	ctx->error[hl + el] = '\0';
}

PGresult *handler_exec(struct handler_ctx *ctx, const char *sql, int nparams,
                       const char *const *params)
{
	return dispatch_exec(ctx, sql, nparams, params, NULL);
}

PGresult *dispatch_exec(struct handler_ctx *ctx, const char *sql, int nparams,
                        const char *const *params, PGresult **failed)
{
	PGresult *res;
	ExecStatusType st;

	if (failed)
		*failed = NULL;
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
	if (ctx->deadline > 0 && util_mono_s() > ctx->deadline) {
		snprintf(ctx->error, sizeof(ctx->error),
		         "handler time limit exceeded (handler_timeout_ms = %d): the handler ran "
		         "longer than that and was stopped before its next statement",
		         ctx->timeout_ms);
		ctx->sql_failed = true;
		ctx->timed_out = true;
		return NULL;
	}
	res = PQexecParams(ctx->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	db_ok(ctx->conn, res, PGRES_COMMAND_OK, ctx->error, sizeof(ctx->error));
	note_timeout(ctx, res);
	if (failed)
		*failed = res;
	else
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

size_t handler_text_length(const char *s)
{
	return util_utf8_chars(s);
}

void handler_log(struct handler_ctx *ctx, const char *msg, const char *key, const char *value)
{
	log_kv(LOG_INFO, msg, "event_id", ctx->ev->id, "event_type", ctx->ev->event_type, "handler",
	       ctx->handler, key, value, NULL);
}

bool dispatch_run(PGconn *conn, const struct handler_entry *const *entries, size_t n,
                  const struct event *ev, int timeout_ms, struct dispatch_result *out)
{
	struct handler_ctx ctx = { .conn = conn, .ev = ev, .timeout_ms = timeout_ms };
	enum handler_result r = HANDLER_OK;

	if (timeout_ms > 0)
		ctx.deadline = util_mono_s() + timeout_ms / 1000.0;
	out->failed = NULL;
	for (size_t i = 0; i < n && r == HANDLER_OK; i++) {
		const struct handler_entry *entry = entries[i];

		ctx.handler = entry->name;
		ctx.entry = entry;
		r = entry->fn(&ctx, ev);
		if (r == HANDLER_OK && ctx.sql_failed) {
			r = HANDLER_RETRY;
			if (!ctx.error[0])
				snprintf(ctx.error, sizeof(ctx.error), "a statement failed");
		}
		if (r != HANDLER_OK && r != HANDLER_RETRY)
			r = HANDLER_FAIL;
		if (ctx.timed_out)
			r = HANDLER_RETRY; /* whatever the handler made of it */
		if (r != HANDLER_OK && !ctx.error[0])
			snprintf(ctx.error, sizeof(ctx.error),
			         "handler %s returned %s without a message", entry->name,
			         r == HANDLER_RETRY ? "retry" : "fail");
		if (r != HANDLER_OK)
			out->failed = entry->name;
	}
	snprintf(out->error, sizeof(out->error), "%s", r == HANDLER_OK ? "" : ctx.error);
	out->result = r;
	out->savepoint = ctx.savepoint;

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
