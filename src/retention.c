/*
 * retention.c -- delete processed events, webhook attempt logs and
 * finished deliveries that are older than retention.* allows.
 *
 * A pass runs on its own connection, one transaction per batch. Each
 * batch first takes the transaction-scoped advisory lock
 * pg_try_advisory_xact_lock(1885824374, 1) (a transaction's lock, which
 * PgBouncer's transaction pooling cannot leave behind), so with many
 * instances at most one deletes at a time and the others stop their pass.
 * Each DELETE takes at most retention.batch_size rows found through an
 * index (migration 0003), walking forward from the last row deleted, and
 * commits on its own, so it holds row locks briefly and never blocks the
 * claim: rows in use are skipped (SKIP LOCKED).
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

/*
 * One batch of each kind. $1 the age in ms, $2 the batch size, $3 and $4
 * the key of the last row the previous batch deleted: walking the index
 * forward from there, a pass never reads again what it already emptied
 * (dead index entries, and the dead-lettered events it keeps). Each
 * returns how many rows went and the key to resume from.
 *
 * Processed events whose processed_at is older than the age, except those
 * with a dead letter (a DBA may still replay them). Events processed
 * before pgeventd ran have no processed_at and are left alone.
 */
static const char events_sql[] =
    "WITH d AS (DELETE FROM events WHERE id IN ("
    " SELECT e.id FROM events e"
    " WHERE e.processed AND e.processed_at < now() - $1::bigint * interval '1 millisecond'"
    " AND (e.processed_at, e.id) > ($3::timestamptz, $4::uuid)"
    " AND NOT EXISTS (SELECT 1 FROM event_dead_letters x WHERE x.event_id = e.id)"
    " ORDER BY e.processed_at, e.id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " RETURNING processed_at AS k, id)"
    " SELECT count(*), (array_agg(k ORDER BY k DESC, id DESC))[1]::text,"
    " (array_agg(id ORDER BY k DESC, id DESC))[1]::text FROM d";

static const char attempts_sql[] =
    "WITH d AS (DELETE FROM delivery_attempts WHERE id IN ("
    " SELECT a.id FROM delivery_attempts a"
    " WHERE a.started_at < now() - $1::bigint * interval '1 millisecond'"
    " AND (a.started_at, a.id) > ($3::timestamptz, $4::bigint)"
    " ORDER BY a.started_at, a.id LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " RETURNING started_at AS k, id)"
    " SELECT count(*), (array_agg(k ORDER BY k DESC, id DESC))[1]::text,"
    " (array_agg(id ORDER BY k DESC, id DESC))[1]::text FROM d";

/*
 * Deliveries finished (delivered, failed or dead) longer ago than the age,
 * one status at a time through its partial index (migration 0006), so a
 * pass never reads a pending or in-flight row: their status is in no such
 * index. FOR UPDATE re-reads the status of a row changed since the scan
 * (`deliveries retry` puts a dead one back to pending): such a row is left.
 * Its attempt logs go with each delivery (ON DELETE CASCADE: one probe of
 * delivery_attempts_delivery_idx per delivery, in the same statement).
 */
#define DELIVERIES_SQL(status)                                                                     \
	"WITH d AS (DELETE FROM deliveries WHERE id IN ("                                          \
	" SELECT x.id FROM deliveries x"                                                           \
	" WHERE x.status = '" status "'"                                                           \
	" AND x.finished_at < now() - $1::bigint * interval '1 millisecond'"                       \
	" AND (x.finished_at, x.id) > ($3::timestamptz, $4::uuid)"                                 \
	" ORDER BY x.finished_at, x.id LIMIT $2 FOR UPDATE SKIP LOCKED)"                           \
	" RETURNING finished_at AS k, id)"                                                         \
	" SELECT count(*), (array_agg(k ORDER BY k DESC, id DESC))[1]::text,"                      \
	" (array_agg(id ORDER BY k DESC, id DESC))[1]::text FROM d"

static const char *const deliveries_sql[] = {
	DELIVERIES_SQL("delivered"),
	DELIVERIES_SQL("failed"),
	DELIVERIES_SQL("dead"),
};

/* The lock is a transaction's, taken again by every batch: it holds
 * through PgBouncer in transaction pooling mode too, where a session lock
 * could stay behind on a server connection nobody owns any more. */
static const char lock_sql[] = "SELECT pg_try_advisory_xact_lock($1::int, $2::int)";

enum batch_result { BATCH_ERROR, BATCH_LOCKED_OUT, BATCH_DONE };

/* BEGIN, the lock, one DELETE, COMMIT. Sets *n and moves the key. */
static enum batch_result one_batch(PGconn *conn, const char *sql, const char *const p[4],
                                   char *key_at, size_t at_len, char *key_id, size_t id_len,
                                   long long *n, char *err, size_t errlen)
{
	char cls[16], obj[16];
	const char *lp[2] = { cls, obj };
	PGresult *res = NULL;
	enum batch_result rc = BATCH_ERROR;

	snprintf(cls, sizeof(cls), "%d", RETENTION_LOCK_CLASS);
	snprintf(obj, sizeof(obj), "%d", RETENTION_LOCK_OBJ);
	if (!db_exec(conn, "BEGIN", err, errlen))
		return BATCH_ERROR;
	res = PQexecParams(conn, lock_sql, 2, NULL, lp, NULL, NULL, 0);
	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen))
		goto out;
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		rc = BATCH_LOCKED_OUT;
		goto out;
	}
	PQclear(res);
	res = PQexecParams(conn, sql, 4, NULL, p, NULL, NULL, 0);
	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen))
		goto out;
	*n = atoll(PQgetvalue(res, 0, 0));
	if (*n > 0) {
		snprintf(key_at, at_len, "%s", PQgetvalue(res, 0, 1));
		snprintf(key_id, id_len, "%s", PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	res = NULL;
	if (!db_exec(conn, "COMMIT", err, errlen))
		return BATCH_ERROR;
	return BATCH_DONE;
out:
	PQclear(res);
	if (!db_broken(conn)) {
		char ignore[256];

		db_exec(conn, "ROLLBACK", ignore, sizeof(ignore));
	}
	return rc;
}

/* Delete in batches with `sql` until a batch comes back short, the lock
 * goes to another instance, or *stop is set. */
static bool delete_batches(PGconn *conn, const char *sql, const char *first_id, long long age_ms,
                           int batch, const atomic_int *stop, long long *total, bool *locked_out,
                           char *err, size_t errlen)
{
	char age[32], lim[16], key_at[64] = "-infinity", key_id[64];
	const char *p[4] = { age, lim, key_at, key_id };

	snprintf(age, sizeof(age), "%lld", age_ms);
	snprintf(lim, sizeof(lim), "%d", batch);
	snprintf(key_id, sizeof(key_id), "%s", first_id);
	for (;;) {
		long long n = 0;

		switch (one_batch(conn, sql, p, key_at, sizeof(key_at), key_id, sizeof(key_id), &n,
		                  err, errlen)) {
		case BATCH_ERROR:
			return false;
		case BATCH_LOCKED_OUT:
			*locked_out = true;
			return true;
		case BATCH_DONE:
			break;
		}
		*total += n;
		if (n < batch || (stop && atomic_load(stop)))
			return true;
	}
}

bool retention_pass(PGconn *conn, const struct retention_config *rc, const atomic_int *stop,
                    struct retention_result *out, char *err, size_t errlen)
{
	bool ok = true;

	memset(out, 0, sizeof(*out));
	if (rc->processed_after_ms > 0)
		ok = delete_batches(conn, events_sql, "00000000-0000-0000-0000-000000000000",
		                    rc->processed_after_ms, rc->batch_size, stop, &out->events,
		                    &out->locked_out, err, errlen);
	if (ok && !out->locked_out && rc->delivery_attempts_after_ms > 0)
		ok = delete_batches(conn, attempts_sql, "0", rc->delivery_attempts_after_ms,
		                    rc->batch_size, stop, &out->delivery_attempts, &out->locked_out,
		                    err, errlen);
	for (size_t i = 0; i < sizeof(deliveries_sql) / sizeof(deliveries_sql[0]); i++) {
		if (!ok || out->locked_out || rc->deliveries_after_ms <= 0 ||
		    (stop && atomic_load(stop)))
			break;
		ok = delete_batches(conn, deliveries_sql[i], "00000000-0000-0000-0000-000000000000",
		                    rc->deliveries_after_ms, rc->batch_size, stop, &out->deliveries,
		                    &out->locked_out, err, errlen);
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
		/* A DELETE is bounded by batch_size and walks an index; this bounds
		 * a pathological one, short enough not to hold up a shutdown. */
		if (r->conn &&
		    !db_exec(r->conn, "SET statement_timeout = '5s'", err, sizeof(err))) {
			PQfinish(r->conn);
			r->conn = NULL;
		}
		if (!r->conn) {
			log_kv(LOG_WARNING, "retention: database unavailable, pass skipped",
			       "error", err, NULL);
			return;
		}
	}
	if (!retention_pass(r->conn, &cfg->retention, &r->rt->stopping, &res, err, sizeof(err)))
		log_kv(LOG_WARNING, "retention pass failed", "error", err, NULL);
	else if (res.locked_out)
		log_kv(LOG_DEBUG, "retention: another instance holds the lock, pass skipped", NULL);
	telemetry_retention(res.events, res.delivery_attempts, res.deliveries);
	if (res.events || res.delivery_attempts || res.deliveries || log_enabled(LOG_DEBUG)) {
		char ev[32], at[32], dl[32], ms[32];

		snprintf(ev, sizeof(ev), "%lld", res.events);
		snprintf(at, sizeof(at), "%lld", res.delivery_attempts);
		snprintf(dl, sizeof(dl), "%lld", res.deliveries);
		snprintf(ms, sizeof(ms), "%.0f", (util_mono_s() - t0) * 1000.0);
		log_kv(LOG_INFO, "retention pass", "events_deleted", ev,
		       "delivery_attempts_deleted", at, "deliveries_deleted", dl, "duration_ms", ms,
		       NULL);
	}
}

static bool retention_on(const struct config *cfg)
{
	return cfg->retention.processed_after_ms > 0 ||
	       cfg->retention.delivery_attempts_after_ms > 0 ||
	       cfg->retention.deliveries_after_ms > 0;
}

/*
 * A pass when retention is turned on (at start or by a SIGHUP), then one
 * every retention.interval after the last one started; a reload that
 * changes the interval moves the next pass at once.
 */
static void *retention_main(void *arg)
{
	struct retention *r = arg;
	const struct config *cfg = runtime_config_refresh(r->rt, NULL);
	int64_t last = 0; /* monotonic start of the last pass; 0 = none since turned on */

	while (!atomic_load(&r->rt->stopping)) {
		int64_t now = util_mono_ms(), due, wait = 1000;

		cfg = runtime_config_refresh(r->rt, cfg);
		if (!retention_on(cfg)) {
			last = 0;
		} else {
			due = last ? last + cfg->retention.interval_ms : now;
			if (now >= due) {
				last = now;
				run_pass(r, cfg);
				due = last + cfg->retention.interval_ms;
			}
			wait = due - util_mono_ms();
		}
		/* Wake at least every second: a SIGHUP may change the schedule. */
		db_wait(NULL, r->rt->wake_fd, (int)(wait < 0 ? 0 : wait > 1000 ? 1000 : wait));
	}
	runtime_config_put(r->rt, cfg);
	PQfinish(r->conn);
	r->conn = NULL;
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
