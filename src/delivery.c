/* delivery.c -- the relay's deliveries table: claim, lease, fenced results (see delivery.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "enqueue.h"
#include "util.h"

/*
 * The claim, per enabled and unpaused subscription with due work: each may
 * take up to its max_in_flight minus what it has in flight (counted across
 * instances), and up to its rate limit's tokens; the subscriptions then
 * share the free slots ($1) round-robin, oldest first within a turn. The
 * subscription rows are locked (SKIP LOCKED: two instances do not claim for
 * the same subscription at once), so the token bucket is exact. Pending rows
 * of disabled or paused subscriptions are never read (deliveries_sub_due_idx
 * keeps them under their own subscription_id).
 * Deliveries waiting behind their key's head (ordered subscriptions,
 * migration 0009) are due at 'infinity': the claim never reads them.
 * Whether a subscription has due work is a probe for its first due row in
 * the index's order (an EXISTS could be planned as reading all of them). The rows are updated by id
 * from an array (a join with `chosen` would be
 * planned, generically, as a scan of the table: see delivery_prepare).
 * $1 how many, $2 lease margin in ms (added to the subscription's timeout)
 */
static const char claim_sql[] =
    "WITH s AS ( "
    "  SELECT id, max_in_flight, rate_limit, rate_tokens, rate_at FROM subscriptions "
    "   WHERE enabled AND (paused_until IS NULL OR paused_until <= now()) "
    "     AND (SELECT true FROM deliveries e WHERE e.subscription_id = subscriptions.id "
    "           AND e.status = 'pending' AND e.next_attempt_at <= now()"
    "         ORDER BY e.next_attempt_at LIMIT 1) "
    "     FOR NO KEY UPDATE SKIP LOCKED), "
    "room AS ( "
    "  SELECT s.id, "
    "         CASE WHEN s.rate_limit IS NOT NULL THEN least(s.rate_limit::float8, "
    "              coalesce(s.rate_tokens + extract(epoch FROM now() - s.rate_at) * s.rate_limit, "
    "                       s.rate_limit)) END AS tokens, "
    "         least($1::int, s.max_in_flight - (SELECT count(*) FROM deliveries f "
    "                 WHERE f.subscription_id = s.id AND f.status = 'in_flight')) AS n "
    "    FROM s), "
    "pick AS ( "
    "  SELECT x.id, x.sub, x.next_attempt_at, "
    "         row_number() OVER (PARTITION BY x.sub ORDER BY x.next_attempt_at, x.id) AS rk "
    "    FROM room, LATERAL ( "
    "      SELECT d.id, d.subscription_id AS sub, d.next_attempt_at FROM deliveries d "
    "       WHERE d.subscription_id = room.id AND d.status = 'pending' AND d.next_attempt_at <= "
    "now() "
    "       ORDER BY d.next_attempt_at "
    "       LIMIT greatest(0, least(room.n, coalesce(floor(room.tokens), room.n))) "
    "         FOR UPDATE OF d SKIP LOCKED) x), "
    "chosen AS (SELECT id, sub FROM pick ORDER BY rk, next_attempt_at LIMIT $1), "
    "bucket AS ( "
    "  UPDATE subscriptions b SET rate_tokens = room.tokens - k.n, rate_at = now() "
    "    FROM room, (SELECT sub, count(*) AS n FROM chosen GROUP BY sub) k "
    "   WHERE b.id = room.id AND k.sub = room.id AND room.tokens IS NOT NULL) "
    "UPDATE deliveries d SET status = 'in_flight', attempt = d.attempt + 1, "
    "  lease = nextval('deliveries_lease_seq'), "
    "  locked_until = now() + (s.timeout_ms + $2::int) * interval '1 millisecond' "
    " FROM subscriptions s WHERE d.id = ANY (ARRAY(SELECT id FROM chosen)) "
    "  AND s.id = d.subscription_id "
    "RETURNING d.id, d.attempt, d.body, s.id, s.name, s.url, s.secret, s.signature_scheme, "
    "  s.id_header, s.timestamp_header, s.signature_header, s.headers::text, s.timeout_ms, "
    "  d.lease, d.subscription_id || ' ' || d.order_key, s.max_attempts";

/* Leases that ran out (a process died, or lost its database, mid-request):
 * back to pending. The lost attempt stays counted, and its late result,
 * if any, no longer matches. A delivery of an ordered subscription that
 * dies here lets the next of its key go (migration 0009): their keys are
 * locked first, in lock order (lk). */
static const char reclaim_sql[] =
    "WITH lk AS MATERIALIZED (SELECT pgeventd_order_lock(ARRAY("
    "  SELECT id FROM deliveries WHERE status = 'in_flight' AND locked_until < now()"
    "   AND order_key IS NOT NULL)) AS n)"
    " UPDATE deliveries d SET status = CASE WHEN d.attempt >= s.max_attempts THEN 'dead'"
    "  ELSE 'pending' END,"
    " locked_until = NULL, next_attempt_at = now(),"
    " finished_at = CASE WHEN d.attempt >= s.max_attempts THEN now() END,"
    " last_error = CASE WHEN d.attempt >= s.max_attempts"
    "  THEN 'gave up after ' || d.attempt || ' attempts: the last did not report back'"
    "  ELSE 'lease expired: the attempt did not report back' END"
    " FROM subscriptions s, lk WHERE s.id = d.subscription_id"
    "  AND d.status = 'in_flight' AND d.locked_until < now()";

/* Deliveries of a subscription no longer ordered still waiting at
 * 'infinity' (a turning off that raced an enqueue before migration 0009
 * locked them apart): due now, unordered. Only unordered subscriptions
 * are probed, each through deliveries_sub_due_idx at 'infinity', where
 * nothing else is: cheap. */
static const char unstrand_sql[] =
    "UPDATE deliveries d SET next_attempt_at = now(), order_key = NULL"
    " FROM subscriptions s WHERE s.id = d.subscription_id AND NOT s.ordered"
    "  AND d.status = 'pending' AND d.next_attempt_at = 'infinity'";

/* A round of results, one element of each array per result (see
 * pgeventd_finish_deliveries in 0005_relay_fair.sql): whether each applied.
 * $15: the ids of the round's ordered deliveries, whose keys are locked
 * first, in lock order, for the trigger that lets the next of a key go
 * (migration 0009); '{}' for a round without any, which costs nothing. */
static const char finish_sql[] =
    "SELECT pgeventd_finish_deliveries($1::uuid[], $2::bigint[], $3::int[], $4::text[],"
    " $5::int[], $6::text[], $7::text[], $8::float8[], $9::float8[], $10::bigint[],"
    " $11::int, $12::bigint, $13::bigint, $14::boolean)"
    " FROM (SELECT pgeventd_order_lock($15::uuid[])) lk";

/* Shutdown: requests not sent or not finished go back, attempt uncounted. */
static const char release_sql[] =
    "UPDATE deliveries SET status = 'pending', attempt = attempt - 1, locked_until = NULL,"
    " next_attempt_at = now() WHERE id = $1 AND lease = $2::bigint AND status = 'in_flight'";

/*
 * The claim and the round of results are planned once, generically, for
 * the session: a custom plan for each call cost as much as running it
 * (PostgreSQL kept choosing them: their parameters are arrays and limits).
 */
bool delivery_prepare(PGconn *conn, char *err, size_t errlen)
{
	return db_exec(conn, "SET plan_cache_mode = force_generic_plan", err, errlen) &&
	       db_prepare(conn, "claim", claim_sql, 2, err, errlen) &&
	       db_prepare(conn, "reclaim", reclaim_sql, 0, err, errlen) &&
	       db_prepare(conn, "unstrand", unstrand_sql, 0, err, errlen) &&
	       db_prepare(conn, "finish", finish_sql, 15, err, errlen) &&
	       db_prepare(conn, "release", release_sql, 2, err, errlen);
}

PGresult *delivery_claim(PGconn *conn, int limit, int margin_ms, char *err, size_t errlen)
{
	char s_limit[16], s_margin[16];
	const char *p[2] = { s_limit, s_margin };
	PGresult *res;

	snprintf(s_limit, sizeof(s_limit), "%d", limit);
	snprintf(s_margin, sizeof(s_margin), "%d", margin_ms);
	res = PQexecPrepared(conn, "claim", 2, p, NULL, NULL, 0);
	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen)) {
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A growing string: an array literal being built. */
struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Append `v` (NULL: SQL NULL) to an array literal, quoted and escaped. */
static void buf_elem(struct buf *b, const char *v)
{
	buf_put(b, b->len == 0 ? "{" : ",", 1);
	if (!v) {
		buf_put(b, "NULL", 4);
		return;
	}
	buf_put(b, "\"", 1);
	for (const char *c = v; *c; c++) {
		if (*c == '"' || *c == '\\')
			buf_put(b, "\\", 1);
		buf_put(b, c, 1);
	}
	buf_put(b, "\"", 1);
}

/* The parameters of one pgeventd_finish_deliveries() call. */
enum {
	R_ID,
	R_LEASE,
	R_ATTEMPT,
	R_OUTCOME,
	R_STATUS,
	R_ERROR,
	R_RESPONSE,
	R_STARTED,
	R_DURATION,
	R_RETRY,
	R_NARRAYS
};
struct round {
	struct buf a[R_NARRAYS];
	struct buf ordered; /* the ids of ordered deliveries ($15) */
	char bf[16], cool[32], dis[32];
	const char *p[15];
};

static void round_free(struct round *rd)
{
	for (int k = 0; k < R_NARRAYS; k++)
		free(rd->a[k].p);
	free(rd->ordered.p);
}

/* Build the call's parameters for `n` results; false with why in `err`. */
static bool round_build(struct round *rd, const struct relay_config *rc, struct delivery **ds,
                        int n, char *err, size_t errlen)
{
	*rd = (struct round){ 0 };
	snprintf(rd->bf, sizeof(rd->bf), "%d", rc ? rc->breaker_failures : 0);
	snprintf(rd->cool, sizeof(rd->cool), "%d", rc ? rc->breaker_cooldown_ms : 0);
	snprintf(rd->dis, sizeof(rd->dis), "%d", rc ? rc->disable_after_ms : 0);
	for (int i = 0; i < n; i++) {
		struct delivery *d = ds[i];

		buf_elem(&rd->a[R_ID], d->id);
		buf_elem(&rd->a[R_LEASE], d->lease);
		buf_elem(&rd->a[R_ATTEMPT], d->s_attempt);
		buf_elem(&rd->a[R_OUTCOME], d->outcome);
		buf_elem(&rd->a[R_STATUS], d->res.status ? d->s_status : NULL);
		buf_elem(&rd->a[R_ERROR], d->res.error[0] ? d->res.error : NULL);
		buf_elem(&rd->a[R_RESPONSE], d->res.response_len ? d->res.response : NULL);
		buf_elem(&rd->a[R_STARTED], d->s_started);
		buf_elem(&rd->a[R_DURATION], d->s_duration);
		buf_elem(&rd->a[R_RETRY], d->s_retry);
		if (d->ordered)
			buf_elem(&rd->ordered, d->id);
	}
	if (rd->ordered.len == 0)
		buf_put(&rd->ordered, "{", 1);
	buf_put(&rd->ordered, "}", 1);
	if (rd->ordered.oom) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	rd->p[14] = rd->ordered.p;
	for (int k = 0; k < R_NARRAYS; k++) {
		buf_put(&rd->a[k], "}", 1);
		if (rd->a[k].oom) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		rd->p[k] = rd->a[k].p;
	}
	rd->p[10] = rd->bf;
	rd->p[11] = rd->cool;
	rd->p[12] = rd->dis;
	/* operational events go to the relay's subscriptions when it routes them */
	rd->p[13] = rc && (enqueue_wants(rc, "pgeventd.subscription.disabled") ||
	                   enqueue_wants(rc, "pgeventd.subscription.breaker_opened"))
	                ? "t"
	                : "f";
	return true;
}

/* Read the call's answer into each result's applied; false with why. */
static bool round_applied(PGconn *conn, const PGresult *res, struct delivery **ds, int n, char *err,
                          size_t errlen)
{
	const char *v;
	int i = 0;

	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen))
		return false;
	if (PQntuples(res) != 1) {
		snprintf(err, errlen, "pgeventd_finish_deliveries returned %d rows",
		         PQntuples(res));
		return false;
	}
	/* "{t,f,...}": one flag per result, in order */
	v = PQgetvalue(res, 0, 0);
	for (const char *c = v; *c && i < n; c++)
		if (*c == 't' || *c == 'f')
			ds[i++]->applied = *c == 't';
	if (i != n) {
		snprintf(err, errlen, "pgeventd_finish_deliveries returned %s", v);
		return false;
	}
	return true;
}

/* The whole round in one statement; false when it did not run (err). */
static bool finish_round(PGconn *conn, const struct relay_config *rc, struct delivery **ds, int n,
                         char *err, size_t errlen)
{
	struct round rd;
	PGresult *res = NULL;
	bool ok = false;

	if (round_build(&rd, rc, ds, n, err, errlen)) {
		res = PQexecPrepared(conn, "finish", 15, rd.p, NULL, NULL, 0);
		ok = round_applied(conn, res, ds, n, err, errlen);
	}
	PQclear(res);
	round_free(&rd);
	return ok;
}

/* Mark each result written (or not, with `err`). */
static void mark_written(struct delivery **ds, int n, bool ok, const char *err)
{
	for (int i = 0; i < n; i++) {
		ds[i]->written = ok;
		if (ok)
			ds[i]->dberr[0] = '\0';
		else
			snprintf(ds[i]->dberr, sizeof(ds[i]->dberr), "%s", err);
	}
}

/* A deadlock or a serialization failure: the round can simply run again. */
static bool retryable(const char *err)
{
	return strstr(err, "deadlock detected") != NULL ||
	       strstr(err, "could not serialize") != NULL;
}

/*
 * Record the results of a round of finished deliveries in one statement,
 * one transaction. A round the database did not take stays unrecorded:
 * each lease expires and its delivery is sent again (at least once).
 */
bool delivery_write_results(PGconn *conn, const struct relay_config *rc, struct delivery **ds,
                            int n)
{
	char err[DB_ERRLEN];
	bool ok;

	for (int i = 0; i < n; i++) {
		snprintf(ds[i]->dberr, sizeof(ds[i]->dberr), "no database connection");
		ds[i]->written = ds[i]->applied = false;
	}
	if (n == 0 || db_broken(conn))
		return true;
	ok = finish_round(conn, rc, ds, n, err, sizeof(err));
	if (!ok && !db_broken(conn) && retryable(err))
		ok = finish_round(conn, rc, ds, n, err, sizeof(err));
	mark_written(ds, n, ok, err);
	return true;
}

/*
 * A round of results (n > 0) and the next claim (limit > 0) in one
 * pipeline: one round trip, one transaction (the statements before a
 * pipeline's sync run as one), so one commit. When the results fail, the
 * claim does not run either. Sent without waiting: delivery_round_poll()
 * reads the answers as they come.
 */
bool delivery_round_send(PGconn *conn, const struct relay_config *rc, struct delivery_round *rd,
                         struct delivery **ds, int n, int limit, int margin_ms)
{
	char s_limit[16], s_margin[16];
	const char *cp[2] = { s_limit, s_margin };
	struct round args = { 0 };
	bool ok;

	*rd = (struct delivery_round){ .ds = ds, .n = n, .claims = limit > 0, .rc = rc };
	for (int i = 0; i < n; i++) {
		snprintf(ds[i]->dberr, sizeof(ds[i]->dberr), "no database connection");
		ds[i]->written = ds[i]->applied = false;
	}
	snprintf(s_limit, sizeof(s_limit), "%d", limit);
	snprintf(s_margin, sizeof(s_margin), "%d", margin_ms);
	if (n > 0 && !round_build(&args, rc, ds, n, rd->err, sizeof(rd->err))) {
		round_free(&args);
		mark_written(ds, n, false, rd->err);
		return false;
	}
	ok = PQenterPipelineMode(conn) == 1 &&
	     (n == 0 || PQsendQueryPrepared(conn, "finish", 15, args.p, NULL, NULL, 0)) &&
	     (!rd->claims || PQsendQueryPrepared(conn, "claim", 2, cp, NULL, NULL, 0)) &&
	     PQpipelineSync(conn) == 1;
	round_free(&args);
	if (!ok) {
		snprintf(rd->err, sizeof(rd->err), "%s", PQerrorMessage(conn));
		mark_written(ds, n, false, rd->err);
		rd->broken = true;
	}
	return ok;
}

/* One answer of the round: the results' (first when n > 0), then the claim's. */
static void round_answer(PGconn *conn, struct delivery_round *rd, PGresult *res)
{
	bool is_finish = rd->answers++ == 0 && rd->n > 0;

	if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
		PQclear(res);
	} else if (is_finish) {
		rd->finished = round_applied(conn, res, rd->ds, rd->n, rd->err, sizeof(rd->err));
		PQclear(res);
	} else if ((rd->n == 0 || rd->finished) &&
	           db_ok(conn, res, PGRES_TUPLES_OK, rd->err, sizeof(rd->err))) {
		rd->claimed = res;
	} else {
		if (rd->n == 0 || rd->finished)
			db_ok(conn, res, PGRES_TUPLES_OK, rd->err, sizeof(rd->err));
		PQclear(res);
	}
}

/* The round is over (synced, or the connection is gone): its outcome. */
static enum delivery_round_state round_over(PGconn *conn, struct delivery_round *rd)
{
	bool ok;

	if (!rd->synced || PQexitPipelineMode(conn) != 1) {
		rd->broken = true;
		if (!rd->synced)
			snprintf(rd->err, sizeof(rd->err), "the connection was lost");
	}
	/* Without the sync the commit is unknown: the claim may have rolled
	 * back (and another instance may send its rows), so none is sent. */
	if (!rd->synced && rd->claimed) {
		PQclear(rd->claimed);
		rd->claimed = NULL;
	}
	ok = rd->synced && rd->n > 0 && rd->finished && (!rd->claims || rd->claimed);
	/* A claim that failed undid the results too: nothing was written. */
	mark_written(rd->ds, rd->n, ok, rd->err);
	if (!ok)
		for (int i = 0; i < rd->n; i++)
			rd->ds[i]->applied = false;
	/* A deadlock with the lease reclaim: the results alone, again. */
	if (rd->n > 0 && !ok && !rd->broken && retryable(rd->err)) {
		char err2[DB_ERRLEN];
		bool again = finish_round(conn, rd->rc, rd->ds, rd->n, err2, sizeof(err2));

		mark_written(rd->ds, rd->n, again, err2);
	}
	return rd->broken ? DELIVERY_ROUND_BROKEN : DELIVERY_ROUND_DONE;
}

enum delivery_round_state delivery_round_poll(PGconn *conn, struct delivery_round *rd, bool block)
{
	if (rd->broken)
		return DELIVERY_ROUND_BROKEN;
	if (!block && !PQconsumeInput(conn))
		return round_over(conn, rd);
	/* the finish's result, NULL, the claim's result, NULL, the sync; two
	 * NULLs in a row: nothing more will come (the connection is gone) */
	while (!rd->synced && rd->nulls < 2 && (block || !PQisBusy(conn))) {
		PGresult *res = PQgetResult(conn);

		if (!res) {
			rd->nulls++;
			continue;
		}
		rd->nulls = 0;
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			rd->synced = true;
			PQclear(res);
		} else {
			round_answer(conn, rd, res);
		}
	}
	if (!rd->synced && rd->nulls < 2 && !db_broken(conn))
		return DELIVERY_ROUND_WAITING;
	return round_over(conn, rd);
}

void delivery_fail_unsendable(PGconn *conn, const PGresult *claimed, int row, const char *why)
{
	struct delivery *d = calloc(1, sizeof(*d));

	if (!d)
		return;
	snprintf(d->id, sizeof(d->id), "%s", PQgetvalue(claimed, row, DELIVERY_COL_ID));
	snprintf(d->lease, sizeof(d->lease), "%s", PQgetvalue(claimed, row, DELIVERY_COL_LEASE));
	snprintf(d->s_attempt, sizeof(d->s_attempt), "%s",
	         PQgetvalue(claimed, row, DELIVERY_COL_ATTEMPT));
	d->ordered = !PQgetisnull(claimed, row, DELIVERY_COL_ORDER_KEY);
	d->outcome = "failed";
	snprintf(d->res.error, sizeof(d->res.error), "%s", why);
	snprintf(d->s_started, sizeof(d->s_started), "%.6f", util_real_s());
	snprintf(d->s_duration, sizeof(d->s_duration), "0");
	snprintf(d->s_retry, sizeof(d->s_retry), "0");
	delivery_write_results(conn, NULL, &d, 1);
	free(d);
}

bool delivery_release(PGconn *conn, const struct delivery *d, char *err, size_t errlen)
{
	const char *p[2] = { d->id, d->lease };
	PGresult *res = PQexecPrepared(conn, "release", 2, p, NULL, NULL, 0);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, errlen);

	PQclear(res);
	return ok;
}

int delivery_reclaim(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexecPrepared(conn, "reclaim", 0, NULL, NULL, NULL, 0);
	int n = db_ok(conn, res, PGRES_COMMAND_OK, err, errlen) ? atoi(PQcmdTuples(res)) : -1;

	PQclear(res);
	return n;
}

int delivery_unstrand(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexecPrepared(conn, "unstrand", 0, NULL, NULL, NULL, 0);
	int n = db_ok(conn, res, PGRES_COMMAND_OK, err, errlen) ? atoi(PQcmdTuples(res)) : -1;

	PQclear(res);
	return n;
}
