/*
 * runtime.h -- state shared by the main thread and every worker, the relay
 * and the health server: stop flags, and the configuration in force,
 * which a SIGHUP replaces while the threads run.
 */
#ifndef PGEVENTD_RUNTIME_H
#define PGEVENTD_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "conf.h"
#include "handlers/registry.h"

struct cfg_ref;

struct runtime {
	const struct registry *reg; /* borrowed */
	atomic_int stopping;        /* stop claiming, finish the batch in hand */
	atomic_int aborting;        /* roll the batch in hand back now */
	int wake_fd;                /* readable once stopping: wakes every wait */
	bool once;                  /* exit when nothing is due (run --once) */
	atomic_int finished;        /* workers whose thread has returned */
	atomic_int relay_done;      /* the relay thread has returned */

	/* The configuration in force; the runtime holds one reference. Read
	 * it through runtime_config_refresh/put, never keep a pointer into it
	 * past a put. */
	pthread_mutex_t cfg_lock;
	struct cfg_ref *live;   /* under cfg_lock */
	atomic_uint generation; /* bumped by every publish */
};

/* A zeroed configuration for conf_init/conf_load to fill, then for
 * runtime_init or runtime_publish. NULL when out of memory. Free one that
 * was never handed over with runtime_config_free. */
struct config *runtime_config_new(void);
void runtime_config_free(struct config *cfg);

/* Zero `rt` and make `cfg` (from runtime_config_new, loaded) the
 * configuration in force; the runtime owns it from now on. */
void runtime_init(struct runtime *rt, struct config *cfg);

/* Drop the runtime's own reference (at exit, after every thread is joined). */
void runtime_release(struct runtime *rt);

/* Main thread only: the configuration in force, without taking a
 * reference (only the main thread replaces it). */
const struct config *runtime_config(const struct runtime *rt);

/* Replace the configuration in force with `next` (from runtime_config_new);
 * threads pick it up at their next refresh. Main thread only. */
void runtime_publish(struct runtime *rt, struct config *next);

/*
 * The configuration in force, for a thread that holds `cur` (or NULL):
 * returns `cur` itself while nothing was published (a relaxed load, no
 * lock), else a new reference after dropping `cur`'s. Call it where a
 * loop starts a turn; runtime_config_put the last one when done.
 */
const struct config *runtime_config_refresh(struct runtime *rt, const struct config *cur);
void runtime_config_put(struct runtime *rt, const struct config *cfg);

/* Whether `cfg` (a reference a thread holds) is still the configuration in
 * force: false once a SIGHUP published a newer one. One atomic load. */
bool runtime_config_current(struct runtime *rt, const struct config *cfg);

#endif
