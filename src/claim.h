/*
 * claim.h -- a worker's claim of due events (see claim.c): the statement,
 * its size, where it starts, and the wake-up lock.
 */
#ifndef PGEVENTD_CLAIM_H
#define PGEVENTD_CLAIM_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "conf.h"
#include "worker.h"

/* The claim's columns, in order. */
enum {
	C_ID,
	C_TYPE,
	C_AGG_ID,
	C_AGG_TYPE,
	C_PAYLOAD,
	C_METADATA,
	C_ATTEMPTS,
	C_CREATED_AT,
	C_CREATED_BY,
	C_PRIOR_RUNS,
	C_LAG_S,        /* seconds since the event fell due */
	C_DUE,          /* its due time, text */
	C_ORDERING_KEY, /* events.ordering_key, the producer's explicit key */
	C_KEY,          /* the key it was claimed under (ordered types), else NULL */
	C_DUE_NOW,      /* "t" when due (a key's later events may not be) */
	C_SORT_AT,      /* (the order of the rows) */
	C_ADMITTED,     /* "t": an ordered event admission left to this batch */
};

/* Events of one key a claim takes at most: they run in order in the batch. */
#define CLAIM_KEY_RUN 10

/* Prepare the claim's statements on a new connection. */
bool claim_prepare(PGconn *conn, const struct config *cfg, char *err, size_t errlen);

/* handler_timeout_ms, but never more than half of stall_timeout_ms: a
 * handler stopped by its time limit must not read as a stalled loop. */
int claim_handler_timeout(const struct config *cfg);

/* The size of a worker's first claim, and of one after a claim that was
 * not full. */
int claim_start(const struct config *cfg);

/* Adapt the next claim's size to what this one found and how long the
 * batch took. */
void claim_size_next(struct worker *w, int claimed, double took_s);

/*
 * [release the wake-up lock | set the time limit] [BEGIN] [arm] [claim]
 * in one round trip. `arm` also tries the wake-up lock ahead of the claim
 * and records in w->sleep_state what it found. Sets *full when the claim
 * read the index from its start. Returns the claim result (owned by the
 * caller) or NULL with `err`.
 */
PGresult *claim_begin(struct worker *w, bool arm, bool *full, char *err);

/* [COMMIT; next due] after a claim that found nothing: also sets
 * w->next_due_ms from the next event in backoff or scheduled. */
bool claim_commit_empty(struct worker *w, char *err);

/*
 * After a batch that ran the first `ran` rows of `claim` (NULL for an
 * empty claim), `unordered` of them from the unordered part: the next
 * claim starts (less a second) at the due time of the last unordered event
 * it ran, or -- ordered types only, when the unordered part came back
 * short and ran whole, so that it read its range up to the claim's now() --
 * at that now(). Ordered events not yet admitted lie in that range and are
 * only filtered out by the unordered part: starting past them keeps a
 * backlog of them from being read again by every claim.
 */
void claim_advance(struct worker *w, const PGresult *claim, int unordered, int ran);

/* Let go of the wake-up lock if held; false with `err` if that failed. */
bool claim_release_sleep_lock(struct worker *w, char *err);

#endif
