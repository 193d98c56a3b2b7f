/*
 * supervisor.h -- the systemd side of the main loop: STATUS= when the
 * summary changes (at most every 5 s), and WATCHDOG=1 every half watchdog
 * interval but only while every claim loop turns (liveness.h), so a
 * wedged loop gets the process restarted.
 */
#ifndef PGEVENTD_SUPERVISOR_H
#define PGEVENTD_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include "relay.h"
#include "runtime.h"
#include "worker.h"

struct supervisor {
	struct runtime *rt;           /* borrowed */
	const struct worker *workers; /* borrowed array of nworkers */
	int nworkers;
	const struct relay_state *relay; /* borrowed; NULL when the relay is off */
	uint64_t watchdog_ms;            /* half of WATCHDOG_USEC; 0 = no watchdog */
	int64_t next_ping_ms;
	int64_t next_status_ms;
	bool stalled; /* a stall was logged and pings are held back */
	char last_status[256];
};

/* Fill `sv` for these threads; nothing is sent until supervisor_ready. */
void supervisor_init(struct supervisor *sv, struct runtime *rt, const struct worker *workers,
                     int nworkers, const struct relay_state *relay);

/* Every thread started: READY=1 with `status`, and the watchdog starts
 * when systemd asked for one. */
void supervisor_ready(struct supervisor *sv, const char *status);

/* READY=1 again with the last STATUS= line (after a SIGHUP's RELOADING=1). */
void supervisor_reloaded(const struct supervisor *sv);

/* The main loop calls this every turn while not stopping: feeds the
 * watchdog when it is due and the loops turn, updates STATUS= when due. */
void supervisor_tick(struct supervisor *sv);

#endif
