/*
 * delivery.h -- the relay's side of the deliveries table: claim with a lease,
 * fenced results, leases given back or reclaimed. Transport-independent;
 * relay.c runs it, transport.h sends what it claims.
 *
 * A claim sets status in_flight, attempt + 1, a new lease token and
 * locked_until (FOR UPDATE SKIP LOCKED, so several instances share the
 * table), per subscription within its max_in_flight and rate limit, the
 * subscriptions sharing the free slots round-robin. A round of results is
 * applied by one pgeventd_finish_deliveries() call, one transaction, each
 * result only while its delivery is still in flight under its lease token:
 * a result that comes after its lease expired and the delivery was taken
 * again changes nothing.
 */
#ifndef PGEVENTD_DELIVERY_H
#define PGEVENTD_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "conf.h"
#include "db.h"
#include "transport.h"

/* The columns of a claimed row (delivery_claim). */
enum delivery_column {
	DELIVERY_COL_ID,
	DELIVERY_COL_ATTEMPT,
	DELIVERY_COL_BODY,
	DELIVERY_COL_SUB_ID,
	DELIVERY_COL_SUB_NAME,
	DELIVERY_COL_URL,
	DELIVERY_COL_SECRET,
	DELIVERY_COL_SCHEME,
	DELIVERY_COL_ID_HEADER,
	DELIVERY_COL_TS_HEADER,
	DELIVERY_COL_SIG_HEADER,
	DELIVERY_COL_HEADERS,
	DELIVERY_COL_TIMEOUT_MS,
	DELIVERY_COL_LEASE,
	DELIVERY_COL_ORDER_KEY, /* "<subscription id> <key>", NULL: unordered */
	DELIVERY_COL_MAX_ATTEMPTS,
};

/* One claimed delivery, from claim to its result. */
struct delivery {
	char id[40];
	char lease[24]; /* the claim's fencing token: a result must carry it */
	int attempt;
	int max_attempts; /* the subscription's, at the claim: a retry past it is dead */
	char sub_name[128];
	int transport; /* its row of transports[] */
	bool ordered;  /* of an ordered subscription, with a key (DELIVERY_COL_ORDER_KEY) */
	void *handle;  /* the transport's, while in flight */
	double started_real, started_mono;
	struct transport_result res; /* filled by the transport */
	/* once finished (judge_delivery_result, write_results, report_delivery) */
	const char *outcome;
	long long retry_ms;
	double duration_ms;
	char s_attempt[16], s_status[16], s_started[32], s_duration[32], s_retry[32];
	bool written, applied;
	char dberr[DB_ERRLEN];
};

/* Prepare the statements below on `conn`; false with why in `err`. */
bool delivery_prepare(PGconn *conn, char *err, size_t errlen);

/* Claim up to `limit` due deliveries of enabled, unpaused subscriptions
 * (each within its max_in_flight and rate limit, shared round-robin),
 * leased for their timeout plus `margin_ms`. The rows (enum
 * delivery_column), for the caller to PQclear(); NULL with why in `err`. */
PGresult *delivery_claim(PGconn *conn, int limit, int margin_ms, char *err, size_t errlen);

/*
 * Record the results of finished deliveries in one statement and one
 * transaction, setting each one's written and applied (or dberr). `rc`
 * NULL: no breaker, no automatic disabling. Returns false when the
 * connection was left unusable: the caller reconnects.
 */
bool delivery_write_results(PGconn *conn, const struct relay_config *rc, struct delivery **ds,
                            int n);

/*
 * A round: the results of finished deliveries and the next claim in one
 * round trip and one transaction (a pipeline with one sync), sent without
 * waiting for the answer so that the transports keep sending meanwhile.
 * While a round is out, the connection serves nothing else.
 */
struct delivery_round {
	struct delivery **ds; /* the results, borrowed until the round is over */
	int n;
	bool claims;                   /* the round claims too */
	const struct relay_config *rc; /* borrowed, for a retry of the results */
	int answers, nulls;            /* read so far */
	bool finished, synced, broken;
	PGresult *claimed; /* the claim's rows once over, for the caller to PQclear() */
	char err[DB_ERRLEN];
};

enum delivery_round_state {
	DELIVERY_ROUND_WAITING, /* not all answers are in */
	DELIVERY_ROUND_DONE,    /* over; each result's written, applied, dberr set */
	DELIVERY_ROUND_BROKEN,  /* over, and the connection is unusable: reconnect */
};

/*
 * Send the round of `n` results `ds` and, when `limit` > 0, a claim of up
 * to `limit` deliveries leased with `margin_ms`. False when it could not
 * be sent (rd->err; rd->broken when the connection is unusable): then it
 * is over and nothing was written.
 */
bool delivery_round_send(PGconn *conn, const struct relay_config *rc, struct delivery_round *rd,
                         struct delivery **ds, int n, int limit, int margin_ms);

/*
 * Read what has come of the round; `block`: wait until it is over. Once
 * over, each result's written and applied are set, and rd->claimed holds
 * the claim's rows (NULL with why in rd->err when the claim failed, which
 * undid the results too, unless the error was a deadlock, after which the
 * results alone are written again, and when the connection was lost before
 * the sync: then neither the claim nor the results are known committed).
 */
enum delivery_round_state delivery_round_poll(PGconn *conn, struct delivery_round *rd, bool block);

/* Record row `row` of a claim as failed for good with `why` (it cannot
 * even be sent); best effort: an unrecorded one is retried after its lease. */
void delivery_fail_unsendable(PGconn *conn, const PGresult *claimed, int row, const char *why);

/* Give an unfinished delivery back (shutdown): pending again, the attempt
 * uncounted; false with why in `err`. */
bool delivery_release(PGconn *conn, const struct delivery *d, char *err, size_t errlen);

/* Put deliveries whose lease ran out back to pending (or dead after their
 * last attempt); how many, or -1 with why in `err`. */
int delivery_reclaim(PGconn *conn, char *err, size_t errlen);

/* Make due the deliveries of unordered subscriptions left waiting at
 * 'infinity' (see unstrand_sql); how many, or -1 with why in `err`. */
int delivery_unstrand(PGconn *conn, char *err, size_t errlen);

#endif
