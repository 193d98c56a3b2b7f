/*
 * test_handlers.c -- handlers that only test binaries link: each one
 * behaves in one way the integration tests need to observe (an effect
 * row, a failure pattern, a slow or crashing handler).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "tests/test_handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern const struct migration test_migrations[];

/* Insert one row into test_effects: the observable effect of handling. */
static enum handler_result write_effect(struct handler_ctx *ctx, const struct event *ev)
{
	const char *p[2] = { ev->id, ev->event_type };
	PGresult *res = handler_exec(
	    ctx, "INSERT INTO test_effects (event_id, event_type) VALUES ($1, $2)", 2, p);

	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

static int payload_int(const struct event *ev, const char *key, int def)
{
	const json_t *v = json_is_object(ev->payload) ? json_object_get(ev->payload, key) : NULL;

	return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static enum handler_result test_effect(struct handler_ctx *ctx, const struct event *ev)
{
	return write_effect(ctx, ev);
}

/* Fails (RETRY) on the first payload.fail_times attempts, then succeeds. */
static enum handler_result test_flaky(struct handler_ctx *ctx, const struct event *ev)
{
	int fail_times = payload_int(ev, "fail_times", 2);

	if (ev->attempt <= fail_times)
		return handler_retry(ctx, "flaky: failing attempt %d of %d", ev->attempt,
		                     fail_times);
	return write_effect(ctx, ev);
}

static enum handler_result test_fail(struct handler_ctx *ctx, const struct event *ev)
{
	(void)ev;
	return handler_retry(ctx, "always fails");
}

static enum handler_result test_permanent(struct handler_ctx *ctx, const struct event *ev)
{
	(void)ev;
	return handler_error(ctx, "permanently broken");
}

/* Writes its effect, then fails: the effect must be rolled back. */
static enum handler_result test_write_then_fail(struct handler_ctx *ctx, const struct event *ev)
{
	if (write_effect(ctx, ev) != HANDLER_OK)
		return HANDLER_RETRY;
	return handler_error(ctx, "wrote, then failed");
}

/* Sleeps payload.ms milliseconds, then writes its effect. */
static enum handler_result test_slow(struct handler_ctx *ctx, const struct event *ev)
{
	int ms = payload_int(ev, "ms", 500);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	return write_effect(ctx, ev);
}

/* Records the moment its handler started in
 * test_stamps: scripts/bench latency subtracts the producer's commit
 * timestamp from it. The time is read here, as the handler starts (the
 * same machine's clock as the server's), not by the INSERT, which runs
 * after the savepoint handler_exec takes first. */
static enum handler_result test_stamp(struct handler_ctx *ctx, const struct event *ev)
{
	struct timespec now;
	char at[64];
	const char *p[2] = { ev->id, at };
	PGresult *res;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(at, sizeof(at), "%lld.%06ld", (long long)now.tv_sec, now.tv_nsec / 1000);
	res = handler_exec(ctx,
	                   "INSERT INTO test_stamps (event_id, started_at)"
	                   " VALUES ($1, to_timestamp($2::float8))",
	                   2, p);
	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

/* Takes the whole process down, like a handler with a memory bug. */
static enum handler_result test_crash(struct handler_ctx *ctx, const struct event *ev)
{
	(void)ctx;
	(void)ev;
	abort();
}

/* Runs a statement that fails; the batch must go on. */
static enum handler_result test_sql_error(struct handler_ctx *ctx, const struct event *ev)
{
	PGresult *res = handler_exec(ctx, "SELECT * FROM no_such_table", 0, NULL);

	(void)ev;
	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

/* Writes its effect recording, as event_type "xids:N", how many
 * transaction ids the batch's session holds: the top transaction's plus one
 * per live subtransaction that wrote (each holds a lock on its own xid). */
static enum handler_result test_xids(struct handler_ctx *ctx, const struct event *ev)
{
	const char *p[1] = { ev->id };
	PGresult *res =
	    handler_exec(ctx,
	                 "INSERT INTO test_effects (event_id, event_type) SELECT $1, 'xids:' ||"
	                 " (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'"
	                 " AND pid = pg_backend_pid())",
	                 1, p);

	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

/*
 * For ordered types: sleeps payload.ms, RETRYs its first payload.fail_times
 * attempts, fails permanently while its id is in test_broken, else records
 * in test_spans when it started and (at the INSERT) ended, under the key
 * payload.key and position payload.n. Spans of runs that did not succeed
 * roll back with their savepoint.
 */
static enum handler_result test_ordered(struct handler_ctx *ctx, const struct event *ev)
{
	const json_t *key =
	    json_is_object(ev->payload) ? json_object_get(ev->payload, "key") : NULL;
	int ms = payload_int(ev, "ms", 0);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L }, now;
	char at[64], n[16], attempt[16];
	const char *p[5] = { ev->id, json_is_string(key) ? json_string_value(key) : "", n, attempt,
		             at };
	PGresult *res;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(at, sizeof(at), "%lld.%06ld", (long long)now.tv_sec, now.tv_nsec / 1000);
	snprintf(n, sizeof(n), "%d", payload_int(ev, "n", 0));
	snprintf(attempt, sizeof(attempt), "%d", ev->attempt);
	if (ms > 0)
		nanosleep(&ts, NULL);
	if (ev->attempt <= payload_int(ev, "fail_times", 0))
		return handler_retry(ctx, "ordered: failing attempt %d", ev->attempt);
	res = handler_exec(ctx, "SELECT 1 FROM test_broken WHERE event_id = $1", 1, p);
	if (!res)
		return HANDLER_RETRY;
	if (PQntuples(res) > 0) {
		PQclear(res);
		return handler_error(ctx, "ordered: broken");
	}
	PQclear(res);
	res = handler_exec(ctx,
	                   "INSERT INTO test_spans (event_id, key, n, attempt, started_at)"
	                   " VALUES ($1, $2, $3, $4, to_timestamp($5::float8))",
	                   5, p);
	if (!res)
		return HANDLER_RETRY;
	PQclear(res);
	return HANDLER_OK;
}

static const struct handler_entry test_handlers[] = {
	HANDLER("test.crash", test_crash, HANDLER_F_JSON, "aborts the process"),
	HANDLER("test.effect", test_effect, HANDLER_F_JSON, "writes a test_effects row"),
	HANDLER("test.fail", test_fail, HANDLER_F_JSON, "always retries"),
	HANDLER("test.flaky", test_flaky, HANDLER_F_JSON,
	        "retries payload.fail_times times, then writes its effect"),
	HANDLER("test.ordered", test_ordered, HANDLER_F_JSON,
	        "records its run's start and end in test_spans (ordering tests)"),
	HANDLER("test.permanent", test_permanent, HANDLER_F_JSON, "fails permanently"),
	HANDLER("test.slow", test_slow, HANDLER_F_JSON, "sleeps payload.ms, then writes"),
	HANDLER("test.sql_error", test_sql_error, HANDLER_F_JSON, "runs a failing statement"),
	HANDLER("test.stamp", test_stamp, HANDLER_F_NONE,
	        "records when its handler started in test_stamps"),
	HANDLER("test.xids", test_xids, HANDLER_F_NONE,
	        "writes an effect naming the session's transaction ids"),
	HANDLER("test.write_then_fail", test_write_then_fail, HANDLER_F_JSON,
	        "writes its effect, then fails permanently"),
	{ NULL, NULL, 0, NULL, NULL },
};

const struct handler_pack test_pack = {
	"test",
	"test-only handlers (never installed)",
	test_handlers,
	test_migrations,
};
