/*
 * sampler.h -- the queue figures /health and /metrics show, read every
 * SAMPLER_INTERVAL_S by a thread of their own on their own connection
 * (statement timeout 2 s), never on the request path: how late the queue
 * is, pending events, dead letters, deliveries and disabled subscriptions
 * (relay on), pending migrations. Each figure reads an index, not a table
 * (the statements are in figures.h).
 */
#ifndef PGEVENTD_SAMPLER_H
#define PGEVENTD_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "runtime.h"

#define SAMPLER_INTERVAL_S 5

/* What the sampler saw last. */
struct sample {
	bool valid;                   /* the last attempt got the oldest age */
	double at;                    /* wall clock of the last valid sample, 0 = never */
	long long pending;            /* unprocessed events; -1 unknown (the count timed out) */
	double oldest_age_s;          /* age of the oldest of them, 0 when none */
	long long dead_letters;       /* -1 unknown; estimated past FIGURES_EXACT_UP_TO */
	int migrations_pending;       /* last known; -1 never checked */
	long long deliveries_pending; /* -1 unknown or relay off */
	long long deliveries_dead;    /* -1 unknown or relay off; as dead_letters */
	json_t *disabled;             /* [{name, reason, disabled_at}], owned; NULL unknown */
	/* Enabled subscriptions whose last attempts failed: [{name,
	 * consecutive_failures, failing_since, paused_until, last_error}],
	 * owned; NULL unknown. */
	json_t *failing;
	char pending_names[256];
	char error[256]; /* why the last attempt failed */
};

struct sampler;

/*
 * A sampler for the daemon run by `rt` (borrowed; its configuration at
 * this call gives the connection string and the packs), with the relay's
 * figures when `relay_on`. No thread yet: until sampler_start, its sample
 * says "starting". NULL when out of memory.
 */
struct sampler *sampler_new(struct runtime *rt, bool relay_on);

/* Start the thread; false with `err` when it cannot. */
bool sampler_start(struct sampler *s, char *err, size_t errlen);

/* A copy of the last sample, its `disabled` list the caller's to release
 * with sample_release. Thread-safe. */
void sampler_read(struct sampler *s, struct sample *out);

/* Free what a sample from sampler_read holds. */
void sample_release(struct sample *sample);

/* Stop and join the thread if it runs, then free s. NULL is a no-op. */
void sampler_free(struct sampler *s);

#endif
