/*
 * liveness.h -- the one rule for "is the daemon alive", read by both
 * GET /health/live (health.c) and the systemd watchdog (supervisor.c):
 * every claim loop, and the relay when it runs, has made progress (a
 * heartbeat) within max(stall_timeout_ms, 3 poll intervals).
 */
#ifndef PGEVENTD_LIVENESS_H
#define PGEVENTD_LIVENESS_H

#include <stdbool.h>
#include <stddef.h>

#include "relay.h"
#include "runtime.h"
#include "worker.h"

/*
 * Whether every worker in workers[0..nworkers) and `relay` (NULL when the
 * relay is off) has beaten its heart within the limit, with the limits in
 * force in `rt`; else false with the first stalled loop named in `why`. A
 * loop that has not beaten yet is not stalled. True while stopping: the
 * loops wind down on purpose. Thread-safe.
 */
bool liveness_loops_turning(struct runtime *rt, const struct worker *workers, int nworkers,
                            const struct relay_state *relay, char *why, size_t len);

#endif
