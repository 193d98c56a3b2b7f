/* delivery.c -- the relay's deliveries table: claim, lease, fenced results (see delivery.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "delivery.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "util.h"

/* $1 how many, $2 lease margin in ms (added to the subscription's timeout) */
static const char claim_sql[] =
    "WITH c AS (SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    "  WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND s.enabled"
    "    AND (s.paused_until IS NULL OR s.paused_until <= now())"
    "  ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE deliveries d SET status = 'in_flight', attempt = d.attempt + 1,"
    "  lease = nextval('deliveries_lease_seq'),"
    "  locked_until = now() + (s.timeout_ms + $2::int) * interval '1 millisecond'"
    " FROM c, subscriptions s WHERE d.id = c.id AND s.id = d.subscription_id"
    " RETURNING d.id, d.attempt, d.body, s.id, s.name, s.url, s.secret, s.signature_scheme,"
    "  s.id_header, s.timestamp_header, s.signature_header, s.headers::text, s.timeout_ms,"
    "  d.lease";

/* Leases that ran out (a process died, or lost its database, mid-request):
 * back to pending. The lost attempt stays counted, and its late result,
 * if any, no longer matches. */
static const char reclaim_sql[] =
    "UPDATE deliveries d SET status = CASE WHEN d.attempt >= s.max_attempts THEN 'dead'"
    "  ELSE 'pending' END,"
    " locked_until = NULL, next_attempt_at = now(),"
    " finished_at = CASE WHEN d.attempt >= s.max_attempts THEN now() END,"
    " last_error = CASE WHEN d.attempt >= s.max_attempts"
    "  THEN 'gave up after ' || d.attempt || ' attempts: the last did not report back'"
    "  ELSE 'lease expired: the attempt did not report back' END"
    " FROM subscriptions s WHERE s.id = d.subscription_id"
    "  AND d.status = 'in_flight' AND d.locked_until < now()";

static const char finish_sql[] =
    "SELECT pgeventd_finish_delivery($1, $13::bigint, $2::int, $3, $4::int, $5, $6,"
    " to_timestamp($7::float8), $8::float8, $9::bigint, $10::int, $11::bigint, $12::bigint)";

/* Shutdown: requests not sent or not finished go back, attempt uncounted. */
static const char release_sql[] =
    "UPDATE deliveries SET status = 'pending', attempt = attempt - 1, locked_until = NULL,"
    " next_attempt_at = now() WHERE id = $1 AND lease = $2::bigint AND status = 'in_flight'";

bool delivery_prepare(PGconn *conn, char *err, size_t errlen)
{
	return db_prepare(conn, "claim", claim_sql, 2, err, errlen) &&
	       db_prepare(conn, "reclaim", reclaim_sql, 0, err, errlen) &&
	       db_prepare(conn, "finish", finish_sql, 13, err, errlen) &&
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

/*
 * Record the results of a set of finished deliveries in one round trip:
 * libpq's pipeline mode sends every pgeventd_finish_delivery() call, each
 * followed by its own sync, so each is its own transaction (one failing,
 * or a deadlock, cannot undo the others). A result the database did not
 * take stays unrecorded: its lease expires and the delivery is sent again
 * (at least once).
 */
bool delivery_write_results(PGconn *conn, const struct relay_config *rc, struct delivery **ds,
                            int n)
{
	char bf[16], cool[32], dis[32];
	int sent = 0;
	bool broken = false;

	snprintf(bf, sizeof(bf), "%d", rc->breaker_failures);
	snprintf(cool, sizeof(cool), "%d", rc->breaker_cooldown_ms);
	snprintf(dis, sizeof(dis), "%d", rc->disable_after_ms);
	for (int i = 0; i < n; i++)
		snprintf(ds[i]->dberr, sizeof(ds[i]->dberr), "no database connection");
	if (n == 0 || db_broken(conn) || PQenterPipelineMode(conn) != 1)
		return true;
	for (; sent < n; sent++) {
		struct delivery *d = ds[sent];
		const char *p[13] = { d->id,
			              d->s_attempt,
			              d->outcome,
			              d->res.status ? d->s_status : NULL,
			              d->res.error[0] ? d->res.error : NULL,
			              d->res.response_len ? d->res.response : NULL,
			              d->s_started,
			              d->s_duration,
			              d->s_retry,
			              bf,
			              cool,
			              dis,
			              d->lease };

		if (!PQsendQueryPrepared(conn, "finish", 13, p, NULL, NULL, 0) ||
		    PQpipelineSync(conn) != 1)
			break;
	}
	/* Per query: its result, NULL, then the sync's PGRES_PIPELINE_SYNC. */
	for (int i = 0; i < sent && !broken; i++) {
		struct delivery *d = ds[i];
		PGresult *res = PQgetResult(conn);

		if (!res) {
			broken = true;
			break;
		}
		d->written = db_ok(conn, res, PGRES_TUPLES_OK, d->dberr, sizeof(d->dberr));
		d->applied = d->written && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
		if (d->written)
			d->dberr[0] = '\0';
		PQclear(res);
		while ((res = PQgetResult(conn)) != NULL) {
			bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;

			PQclear(res);
			if (sync)
				break;
		}
		if (!res) { /* the query's NULL came first: now the sync */
			res = PQgetResult(conn);
			broken = !res || PQresultStatus(res) != PGRES_PIPELINE_SYNC;
			PQclear(res);
		}
	}
	/* false: could not read the pipeline to its end */
	return !broken && PQexitPipelineMode(conn) == 1;
}

void delivery_fail_unsendable(PGconn *conn, const PGresult *claimed, int row, const char *why)
{
	char started[32];
	const char *p[13] = { PQgetvalue(claimed, row, DELIVERY_COL_ID),
		              PQgetvalue(claimed, row, DELIVERY_COL_ATTEMPT),
		              "failed",
		              NULL,
		              why,
		              NULL,
		              started,
		              "0",
		              "0",
		              "0",
		              "0",
		              "0",
		              PQgetvalue(claimed, row, DELIVERY_COL_LEASE) };

	snprintf(started, sizeof(started), "%.6f", util_real_s());
	PQclear(PQexecPrepared(conn, "finish", 13, p, NULL, NULL, 0));
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
