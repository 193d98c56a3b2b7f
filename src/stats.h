/*
 * stats.h -- process-wide counters the workers update and /health reads.
 * Plain C11 atomics: updating them never takes a lock on the claim path.
 */
#ifndef PGEVENTD_STATS_H
#define PGEVENTD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

struct stats {
	atomic_uint_fast64_t processed; /* events that reached an outcome */
	atomic_uint_fast64_t succeeded;
	atomic_uint_fast64_t retried;
	atomic_uint_fast64_t dead_lettered;
	atomic_uint_fast64_t skipped;
	atomic_uint_fast64_t batches;
	atomic_uint_fast64_t db_reconnects;
	_Atomic double last_processed_at; /* wall clock seconds, 0 = never */
};

extern struct stats stats;

#endif
