/*
 * health.h -- what SREs curl and Prometheus scrapes: the routes of the
 * embedded HTTP server (httpd.h), over the queue figures of the sampler
 * thread (sampler.h) and the liveness rule (liveness.h).
 *
 *   GET /health        JSON: status, uptime, workers, stats, queue, config
 *                      (secrets as "***"), registry. 200 ok/degraded, 503 down.
 *   GET /health/live   200 while the main loop and every claim loop make
 *                      progress (liveness_loops_turning).
 *   GET /health/ready  200 when a worker is connected and completing its
 *                      batches and migrations are current, else 503 with
 *                      the reason.
 *   GET /metrics       Prometheus text format 0.0.4 (telemetry.h).
 *
 * Status rules (README, "Health"): down when no worker has been connected
 * to the database for more than HEALTH_DOWN_AFTER_S, or no connected
 * worker's loop has made progress (a completed claim cycle, a wait for
 * work on a healthy connection, an event handled while batches are not
 * failing; never a failure's back-off) within 3 poll intervals + 5 s;
 * degraded when some worker is disconnected, a worker cannot complete a
 * batch or the relay cannot claim (at once, with the error), the queue
 * figures are missing or stale, or the daemon is stopping; ok otherwise.
 *
 * Queue figures never come from the request path: the sampler thread
 * computes them every SAMPLER_INTERVAL_S on its own connection, through
 * the partial claim index and with a statement timeout.
 */
#ifndef PGEVENTD_HEALTH_H
#define PGEVENTD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "handlers/registry.h"
#include "relay.h"
#include "worker.h"

#define HEALTH_DOWN_AFTER_S 30
#define HEALTH_STALE_S      30

struct health_deps {
	const struct registry *reg; /* borrowed */
	struct runtime *rt;         /* borrowed */
	struct worker *workers;     /* borrowed array, may not be started yet */
	int nworkers;
	const struct relay_state *relay; /* borrowed; NULL when the relay is off */
};

struct health;

/* Start the sampler and, unless health.listen is "", the HTTP server.
 * Returns NULL with `err` when the address cannot be bound. */
struct health *health_start(const struct health_deps *deps, char *err, size_t errlen);

/* The main loop calls this every turn (liveness). */
void health_tick(struct health *h);

/* Re-render the config shown in /health (after a SIGHUP). */
void health_config_changed(struct health *h);

/* Stop the server and the sampler and free h. NULL is a no-op. */
void health_stop(struct health *h);

#endif
