/*
 * retention.c -- delete processed events and webhook attempt logs that
 * are older than retention.* allows.
 *
 * A pass runs on its own autocommit connection under a session advisory
 * lock taken with pg_try_advisory_lock, so with many instances at most one
 * deletes at a time and the others simply skip their turn. Each DELETE
 * takes at most retention.batch_size rows found through an index
 * (migration 0003) and commits on its own, so it holds row locks briefly
 * and never blocks the claim: rows in use are skipped (SKIP LOCKED).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "retention.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "telemetry.h"
#include "util.h"

/* Processed events whose processed_at is older than $1 ms, except those
 * with a dead letter (a DBA may still replay them). Events processed
 * before pgeventd ran have no processed_at and are left alone. */
static const char events_sql[] =
    "DELETE FROM events WHERE id IN ("
    " SELECT e.id FROM events e"
    " WHERE e.processed AND e.processed_at < now() - $1::bigint * interval '1 millisecond'"
    " AND NOT EXISTS (SELECT 1 FROM event_dead_letters d WHERE d.event_id = e.id)"
    " LIMIT $2 FOR UPDATE SKIP LOCKED)";

static const char attempts_sql[] =
    "DELETE FROM delivery_attempts WHERE id IN ("
    " SELECT id FROM delivery_attempts"
    " WHERE started_at < now() - $1::bigint * interval '1 millisecond'"
    " LIMIT $2 FOR UPDATE SKIP LOCKED)";

/* Delete in batches with `sql` until a batch comes back short. */
static bool delete_batches(PGconn *conn, const char *sql, long long age_ms, int batch,
                           const atomic_int *stop, long long *total, char *err, size_t errlen)
{
	char age[32], lim[16];
	const char *p[2] = { age, lim };

	snprintf(age, sizeof(age), "%lld", age_ms);
	snprintf(lim, sizeof(lim), "%d", batch);
	for (;;) {
		PGresult *res = PQexecParams(conn, sql, 2, NULL, p, NULL, NULL, 0);
		long long n;

		if (!db_ok(conn, res, PGRES_COMMAND_OK, err, errlen)) {
			PQclear(res);
			return false;
		}
		n = atoll(PQcmdTuples(res));
		PQclear(res);
		*total += n;
		if (n < batch || (stop && atomic_load(stop)))
			return true;
	}
}

static bool lock_call(PGconn *conn, const char *fn, bool *got, char *err, size_t errlen)
{
	char sql[128];
	PGresult *res;
	bool ok;

	snprintf(sql, sizeof(sql), "SELECT %s(%d, %d)", fn, RETENTION_LOCK_CLASS,
	         RETENTION_LOCK_OBJ);
	res = PQexec(conn, sql);
	ok = db_ok(conn, res, PGRES_TUPLES_OK, err, errlen);
	if (ok && got)
		*got = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return ok;
}

bool retention_pass(PGconn *conn, const struct retention_config *rc, const atomic_int *stop,
                    struct retention_result *out, char *err, size_t errlen)
{
	bool got = false, ok = true;

	memset(out, 0, sizeof(*out));
	if (!lock_call(conn, "pg_try_advisory_lock", &got, err, errlen))
		return false;
	if (!got) {
		out->locked_out = true;
		return true;
	}
	if (rc->processed_after_ms > 0)
		ok = delete_batches(conn, events_sql, rc->processed_after_ms, rc->batch_size, stop,
		                    &out->events, err, errlen);
	if (ok && rc->delivery_attempts_after_ms > 0)
		ok = delete_batches(conn, attempts_sql, rc->delivery_attempts_after_ms,
		                    rc->batch_size, stop, &out->delivery_attempts, err, errlen);
	/* On a broken connection the lock went with the session. */
	if (!db_broken(conn)) {
		char ignore[256];

		lock_call(conn, "pg_advisory_unlock", NULL, ignore, sizeof(ignore));
	}
	return ok;
}

/* ---- the thread ---------------------------------------------------------- */

struct retention {
	struct runtime *rt;
	pthread_t thread;
	PGconn *conn; /* owned; opened at the first pass */
};

static void run_pass(struct retention *r, const struct config *cfg)
{
	struct retention_result res;
	char err[512];
	double t0 = util_mono_s();

	if (db_broken(r->conn)) {
		PQfinish(r->conn);
		r->conn = db_connect(conf_conninfo(cfg), "pgeventd retention", err, sizeof(err));
		/* A DELETE is bounded by batch_size; this bounds a pathological one. */
		if (r->conn &&
		    !db_exec(r->conn, "SET statement_timeout = '60s'", err, sizeof(err))) {
			PQfinish(r->conn);
			r->conn = NULL;
		}
		if (!r->conn) {
			log_kv(LOG_WARNING, "retention: database unavailable, pass skipped",
			       "error", err, NULL);
			return;
		}
	}
	if (!retention_pass(r->conn, &cfg->retention, &r->rt->stopping, &res, err, sizeof(err))) {
		log_kv(LOG_WARNING, "retention pass failed", "error", err, NULL);
	} else if (res.locked_out) {
		log_kv(LOG_DEBUG, "retention: another instance holds the lock, pass skipped", NULL);
		return;
	}
	telemetry_retention(res.events, res.delivery_attempts);
	if (res.events || res.delivery_attempts || log_enabled(LOG_DEBUG)) {
		char ev[32], at[32], ms[32];

		snprintf(ev, sizeof(ev), "%lld", res.events);
		snprintf(at, sizeof(at), "%lld", res.delivery_attempts);
		snprintf(ms, sizeof(ms), "%.0f", (util_mono_s() - t0) * 1000.0);
		log_kv(LOG_INFO, "retention pass", "events_deleted", ev,
		       "delivery_attempts_deleted", at, "duration_ms", ms, NULL);
	}
}

static void *retention_main(void *arg)
{
	struct retention *r = arg;
	const struct config *cfg = NULL;
	int64_t next = util_mono_ms(); /* a first pass at start */

	while (!atomic_load(&r->rt->stopping)) {
		int64_t now = util_mono_ms();

		cfg = runtime_config_refresh(r->rt, cfg);
		if (now >= next) {
			if (cfg->retention.processed_after_ms > 0 ||
			    cfg->retention.delivery_attempts_after_ms > 0)
				run_pass(r, cfg);
			next = util_mono_ms() + cfg->retention.interval_ms;
		}
		/* Wake at least every second: a SIGHUP may shorten the interval or
		 * turn retention on. */
		int64_t wait = next - util_mono_ms();
		db_wait(NULL, r->rt->wake_fd, (int)(wait < 0 ? 0 : wait > 1000 ? 1000 : wait));
	}
	runtime_config_put(r->rt, cfg);
	PQfinish(r->conn);
	r->conn = NULL;
	atomic_store(&r->rt->retention_done, 1);
	return NULL;
}

struct retention *retention_start(struct runtime *rt)
{
	struct retention *r = calloc(1, sizeof(*r));
	int rc;

	if (!r) {
		log_kv(LOG_ERROR, "out of memory", NULL);
		return NULL;
	}
	r->rt = rt;
	rc = pthread_create(&r->thread, NULL, retention_main, r);
	if (rc != 0) {
		log_kv(LOG_ERROR, "cannot start the retention thread", "error", strerror(rc), NULL);
		free(r);
		return NULL;
	}
	return r;
}

void retention_join(struct retention *r)
{
	if (!r)
		return;
	pthread_join(r->thread, NULL);
	free(r);
}
