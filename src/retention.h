/*
 * retention.h -- delete what is no longer needed: processed events,
 * webhook attempt logs and finished deliveries older than retention.* say,
 * in small batches, by one pgeventd instance at a time.
 */
#ifndef PGEVENTD_RETENTION_H
#define PGEVENTD_RETENTION_H

#include <libpq-fe.h>

#include "conf.h"
#include "runtime.h"

/* The advisory lock every retention batch takes in its transaction
 * (pg_try_advisory_xact_lock(1885824374, 1); classid 0x70676576 'pgev'):
 * two instances never delete at the same time. */
#define RETENTION_LOCK_CLASS 1885824374
#define RETENTION_LOCK_OBJ   1

struct retention_result {
	long long events;            /* processed events deleted */
	long long delivery_attempts; /* attempt logs deleted (by their own age) */
	long long deliveries;        /* finished deliveries deleted, with their attempt logs */
	bool locked_out;             /* another instance held the lock: the pass stopped */
};

/*
 * One pass on `conn` (autocommit outside it): batches of rc->batch_size
 * rows, each its own transaction that first takes the advisory lock (when
 * another instance holds it the pass stops: locked_out), stopping early
 * when *stop becomes non-zero. Never touches unprocessed events, events
 * that have a dead letter, dead letters, or pending and in-flight
 * deliveries. Returns false with `err` on a
 * database error (what was deleted stays deleted).
 */
bool retention_pass(PGconn *conn, const struct retention_config *rc, const atomic_int *stop,
                    struct retention_result *out, char *err, size_t errlen);

struct retention;

/* Start the thread: a pass every retention.interval while either
 * retention key is set (both are reloadable). NULL if it could not start. */
struct retention *retention_start(struct runtime *rt);

/* Join it (after rt->stopping and the wake-up) and free it. NULL is a no-op. */
void retention_join(struct retention *r);

#endif
