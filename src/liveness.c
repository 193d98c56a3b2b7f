/* liveness.c -- whether the claim loops and the relay are turning (liveness.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "liveness.h"

#include <stdio.h>

#include "util.h"

bool liveness_loops_turning(struct runtime *rt, const struct worker *workers, int nworkers,
                            const struct relay_state *relay, char *why, size_t len)
{
	const struct config *c = runtime_config_refresh(rt, NULL);
	double now = util_mono_s();
	double limit = 3.0 * c->poll_interval_ms / 1000.0;
	bool ok = true;

	if (limit < c->stall_timeout_ms / 1000.0)
		limit = c->stall_timeout_ms / 1000.0;
	runtime_config_put(rt, c);
	if (atomic_load(&rt->stopping))
		return true; /* loops wind down on purpose */
	for (int i = 0; i < nworkers && ok; i++) {
		double beat = atomic_load(&workers[i].heartbeat);

		if (beat > 0 && now - beat > limit) {
			snprintf(why, len, "worker-%d stalled for %.0f s", i + 1, now - beat);
			ok = false;
		}
	}
	if (ok && relay) {
		double beat = atomic_load(&relay->heartbeat);

		if (beat > 0 && now - beat > limit) {
			snprintf(why, len, "relay stalled for %.0f s", now - beat);
			ok = false;
		}
	}
	return ok;
}
