/*
 * batch.h -- one batch of a worker (see batch.c): claim, run the
 * handlers, record outcomes, commit.
 */
#ifndef PGEVENTD_BATCH_H
#define PGEVENTD_BATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "worker.h"

/* Prepare the batch's statements on the worker's two new connections. */
bool batch_prepare(PGconn *conn, PGconn *side, char *err, size_t errlen);

/*
 * Claim and process one batch. Returns the number of events run (0 when
 * nothing was due) or -1 on failure (logged; the transaction is rolled
 * back). Sets *more when more events may be due at once. `arm`: this claim
 * may be the last look before sleeping (claim_begin takes the wake-up lock
 * first).
 */
int batch_run(struct worker *w, bool arm, bool *more);

#endif
