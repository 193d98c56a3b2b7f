/*
 * claim.c -- a worker's claim: which events it takes, how many, and the
 * wake-up lock it holds while it sleeps.
 *
 * The claim reads events_due_idx (due time = next_attempt_at, else
 * created_at) over the range [from, now()]: events in backoff or scheduled
 * later are never visited. `from` is where this worker's last claim ended,
 * less a second for producers whose rows commit after later ones; a full
 * claim from the start of the index runs at most every 20 times its own
 * cost (each dead index entry left by processed events costs a heap visit
 * until vacuum removes it, and a held snapshot keeps vacuum from it), so a
 * row that commits later still is found within that period, and always
 * before the worker sleeps or run --once stops.
 *
 * The claim size starts at 100 (or batch_size, if smaller) and doubles
 * while claims come back full and quick, up to batch_size: an idle queue
 * hands each event over at once, a deep backlog drains in large batches.
 *
 * Wake-ups (listen = true): see migrations/0004_claim_by_due.sql. A claim
 * that may be the last look before a sleep ("armed") first tries the
 * advisory lock SLEEP_LOCK; holding it, and having claimed after taking
 * it, the worker may sleep until a NOTIFY, for producers then notify.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "claim.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "util.h"

/* A claim starts at this size (or batch_size, if smaller). */
#define CLAIM_START 100
/* A batch that took longer than this does not grow the next claim. */
#define GROW_MAX_S 0.25

/* The wake-up lock of migration 0004 (also in its triggers). */
#define SLEEP_LOCK "1885824374, 2"

#define DUE "coalesce(e.next_attempt_at, e.created_at)"

/* $1 limit, $2 the claim's lower bound on the due time ('-infinity' for a
 * full claim). lag is measured from the moment the event fell due. The
 * crash marks are read by a subquery per claimed row, an index probe of
 * pgeventd_inflight's key: as a join the planner may read that table whole,
 * and while a held snapshot keeps vacuum from it, it is mostly dead rows,
 * one per event processed since (measured: claims of 1 to 15 s). */
static const char claim_sql[] =
    "SELECT e.id, e.event_type, e.aggregate_id, e.aggregate_type, e.payload::text,"
    " e.metadata::text, e.attempts, e.created_at, e.created_by,"
    " coalesce((SELECT m.runs FROM pgeventd_inflight m WHERE m.event_id = e.id), 0),"
    " greatest(extract(epoch from clock_timestamp() - " DUE "), 0)::float8, " DUE "::text"
    " FROM events e"
    " WHERE NOT e.processed AND " DUE " >= $2::timestamptz - interval '1 second'"
    " AND " DUE " <= now()"
    " ORDER BY " DUE ", e.id"
    " LIMIT $1 FOR UPDATE OF e SKIP LOCKED";

/* Milliseconds until the next event falls due (a retry in backoff or a
 * scheduled event), NULL when none: the index's first entry after now(). */
static const char next_due_sql[] =
    "SELECT ceil(extract(epoch from min(" DUE ") - clock_timestamp()) * 1000)::bigint"
    " FROM events e WHERE NOT e.processed AND " DUE " > now()";

bool claim_prepare(PGconn *conn, char *err, size_t errlen)
{
	return db_prepare(conn, "claim", claim_sql, 2, err, errlen) &&
	       db_prepare(conn, "next_due", next_due_sql, 0, err, errlen);
}

int claim_handler_timeout(const struct config *cfg)
{
	int half = cfg->stall_timeout_ms / 2;

	return cfg->handler_timeout_ms < half ? cfg->handler_timeout_ms : half;
}

int claim_start(const struct config *cfg)
{
	return cfg->batch_size < CLAIM_START ? cfg->batch_size : CLAIM_START;
}

void claim_size_next(struct worker *w, int claimed, double took_s)
{
	int start = claim_start(w->cfg), max = w->cfg->batch_size;

	if (claimed < w->claim_limit)
		w->claim_limit = start;
	else if (took_s < GROW_MAX_S)
		w->claim_limit = w->claim_limit * 2 > max ? max : w->claim_limit * 2;
	else if (took_s > 4 * GROW_MAX_S && w->claim_limit / 2 >= start)
		w->claim_limit /= 2;
}

/* Where the next claim starts: the end of the last one, or the start of
 * the index when a full claim is due. Sets *full. */
static const char *claim_from(struct worker *w, bool *full)
{
	*full = w->cursor[0] == '\0' || util_mono_s() >= w->next_full_claim;
	return *full ? "-infinity" : w->cursor;
}

/* After a full claim that took `cost_s`: the next one in 20 times that,
 * so they cost at most a twentieth of the time, and within 30 s. */
static void schedule_full_claim(struct worker *w, double cost_s)
{
	double gap = 20 * cost_s;

	w->next_full_claim = util_mono_s() + (gap > 30 ? 30 : gap);
}

bool claim_release_sleep_lock(struct worker *w, char *err)
{
	if (!w->sleep_lock)
		return true;
	w->sleep_lock = false;
	return db_exec(w->conn, "SELECT pg_advisory_unlock_all()", err, DB_ERRLEN);
}

PGresult *claim_begin(struct worker *w, bool arm, bool *full, char *err)
{
	const struct config *cfg = w->cfg;
	struct db_stmt st[5];
	PGresult *res[5];
	char limit[16], timeout[16];
	const char *claim_p[2], *timeout_p[1] = { timeout };
	int n = 0, arm_at = -1, released_at = -1, claim_at;
	bool ok;

	snprintf(limit, sizeof(limit), "%d", w->claim_limit);
	claim_p[0] = limit;
	claim_p[1] = claim_from(w, full);
	if (w->sleep_lock && !arm) {
		released_at = n;
		st[n++] = (struct db_stmt){ NULL, "SELECT pg_advisory_unlock_all()", 0, NULL,
			                    PGRES_TUPLES_OK };
	}
	if (w->timeout_applied_ms != claim_handler_timeout(cfg)) {
		snprintf(timeout, sizeof(timeout), "%d", claim_handler_timeout(cfg));
		st[n++] = (struct db_stmt){ NULL,
			                    "SELECT set_config('statement_timeout', $1, false),"
			                    " set_config('lock_timeout', $1, false)",
			                    1, timeout_p, PGRES_TUPLES_OK };
	}
	st[n++] = (struct db_stmt){ NULL, "BEGIN", 0, NULL, PGRES_COMMAND_OK };
	if (arm && !w->sleep_lock) {
		/* mine: we hold it now; other: another worker sleeps holding it
		 * (producers notify); busy: producers hold it shared, nobody
		 * sleeps. Evaluated in this order (CASE), taken before the claim. */
		arm_at = n;
		st[n++] = (struct db_stmt){ NULL,
			                    "SELECT CASE WHEN pg_try_advisory_lock(" SLEEP_LOCK
			                    ") THEN 'mine'"
			                    " WHEN pg_try_advisory_lock_shared(" SLEEP_LOCK ")"
			                    " AND pg_advisory_unlock_shared(" SLEEP_LOCK
			                    ") THEN 'busy' ELSE 'other' END",
			                    0, NULL, PGRES_TUPLES_OK };
	}
	claim_at = n;
	st[n++] = (struct db_stmt){ "claim", NULL, 2, claim_p, PGRES_TUPLES_OK };
	if (w->sleep_lock && arm) {
		/* Woken while holding the lock: this claim looked after the
		 * wake-up, so let go of the lock in the same round trip rather
		 * than one more before the first handler runs; should it have
		 * found nothing, the worker's next claim takes the lock again
		 * first (w->rearm). */
		released_at = n;
		st[n++] = (struct db_stmt){ NULL, "SELECT pg_advisory_unlock_all()", 0, NULL,
			                    PGRES_TUPLES_OK };
	}

	double t0 = util_mono_s();
	ok = db_pipeline(w->conn, st, n, res, err, DB_ERRLEN);
	w->last_claim_full = *full;
	/* Let go only if the unlock ran: a pipeline that failed before it
	 * leaves the lock held, for the failure path to release. */
	if (released_at >= 0 && res[released_at] &&
	    PQresultStatus(res[released_at]) == PGRES_TUPLES_OK) {
		w->sleep_lock = false;
		if (released_at > claim_at)
			w->rearm = true;
	}
	if (ok)
		w->timeout_applied_ms = claim_handler_timeout(cfg);
	if (arm_at >= 0 && res[arm_at] && PQresultStatus(res[arm_at]) == PGRES_TUPLES_OK) {
		const char *v = PQgetvalue(res[arm_at], 0, 0);

		w->sleep_state = v[0] == 'm' ? SLEEP_MINE : v[0] == 'o' ? SLEEP_OTHER : SLEEP_BUSY;
		if (w->sleep_state == SLEEP_MINE)
			w->sleep_lock = true;
	}
	if (ok && *full)
		schedule_full_claim(w, util_mono_s() - t0);
	for (int i = 0; i < n; i++)
		if (i != claim_at)
			PQclear(res[i]);
	if (!ok) {
		PQclear(res[claim_at]);
		return NULL;
	}
	return res[claim_at];
}

bool claim_commit_empty(struct worker *w, char *err)
{
	struct db_stmt st[2] = {
		{ NULL, "COMMIT", 0, NULL, PGRES_COMMAND_OK },
		{ "next_due", NULL, 0, NULL, PGRES_TUPLES_OK },
	};
	PGresult *res[2];
	bool ok = db_pipeline(w->conn, st, 2, res, err, DB_ERRLEN);

	if (ok && !PQgetisnull(res[1], 0, 0)) {
		int64_t due = util_mono_ms() + atoll(PQgetvalue(res[1], 0, 0)) + 5;

		if (w->next_due_ms == 0 || due < w->next_due_ms)
			w->next_due_ms = due;
	}
	PQclear(res[0]);
	PQclear(res[1]);
	return ok;
}

void claim_remember(struct worker *w, const PGresult *claim, int row)
{
	snprintf(w->cursor, sizeof(w->cursor), "%s", PQgetvalue(claim, row, C_DUE));
}
