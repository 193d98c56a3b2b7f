/*
 * runtime.c -- the configuration in force, shared by the threads.
 *
 * A published configuration is immutable and reference counted: a SIGHUP
 * builds a new one and swaps it in, and the old one is freed when the
 * last thread that still reads it moves on. Threads refresh at the start
 * of a loop turn, so a batch, a claim or a request sees one consistent
 * configuration. The common case (nothing changed) costs one atomic load.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "runtime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cfg_ref {
	struct config cfg; /* first: a struct config * is a struct cfg_ref * */
	int refs;          /* under runtime.cfg_lock once published */
	unsigned generation;
};

static struct cfg_ref *ref_of(const struct config *cfg)
{
	return (struct cfg_ref *)(void *)(uintptr_t)cfg;
}

struct config *runtime_config_new(void)
{
	struct cfg_ref *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->refs = 1;
	return &r->cfg;
}

void runtime_config_free(struct config *cfg)
{
	if (!cfg)
		return;
	conf_release(cfg);
	free(ref_of(cfg));
}

void runtime_init(struct runtime *rt, struct config *cfg)
{
	memset(rt, 0, sizeof(*rt));
	rt->wake_fd = -1;
	pthread_mutex_init(&rt->cfg_lock, NULL);
	rt->live = ref_of(cfg);
	rt->live->generation = 0;
	atomic_store(&rt->generation, 0);
}

/* Drop one reference; frees the configuration with the last one. */
static void unref(struct runtime *rt, struct cfg_ref *r)
{
	bool last;

	pthread_mutex_lock(&rt->cfg_lock);
	last = --r->refs == 0;
	pthread_mutex_unlock(&rt->cfg_lock);
	if (last)
		runtime_config_free(&r->cfg);
}

void runtime_release(struct runtime *rt)
{
	if (!rt->live)
		return;
	unref(rt, rt->live);
	rt->live = NULL;
	pthread_mutex_destroy(&rt->cfg_lock);
}

const struct config *runtime_config(const struct runtime *rt)
{
	return &rt->live->cfg;
}

void runtime_publish(struct runtime *rt, struct config *next)
{
	struct cfg_ref *r = ref_of(next), *old;

	pthread_mutex_lock(&rt->cfg_lock);
	old = rt->live;
	r->generation = old->generation + 1;
	rt->live = r;
	atomic_store(&rt->generation, r->generation);
	pthread_mutex_unlock(&rt->cfg_lock);
	unref(rt, old);
}

bool runtime_config_current(struct runtime *rt, const struct config *cfg)
{
	return ref_of(cfg)->generation ==
	       atomic_load_explicit(&rt->generation, memory_order_acquire);
}

const struct config *runtime_config_refresh(struct runtime *rt, const struct config *cur)
{
	struct cfg_ref *r;

	if (cur && runtime_config_current(rt, cur))
		return cur;
	pthread_mutex_lock(&rt->cfg_lock);
	r = rt->live;
	r->refs++;
	pthread_mutex_unlock(&rt->cfg_lock);
	if (cur)
		unref(rt, ref_of(cur));
	return &r->cfg;
}

void runtime_config_put(struct runtime *rt, const struct config *cfg)
{
	if (cfg)
		unref(rt, ref_of(cfg));
}
