/* supervisor.c -- systemd STATUS= and a watchdog fed only while the loops turn (supervisor.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "supervisor.h"

#include <stdio.h>
#include <string.h>

#include "liveness.h"
#include "log.h"
#include "notify.h"
#include "stats.h"
#include "util.h"

/* How often STATUS= may change. */
#define STATUS_EVERY_MS 5000

void supervisor_init(struct supervisor *sv, struct runtime *rt, const struct worker *workers,
                     int nworkers, const struct relay_state *relay)
{
	memset(sv, 0, sizeof(*sv));
	sv->rt = rt;
	sv->workers = workers;
	sv->nworkers = nworkers;
	sv->relay = relay;
}

void supervisor_ready(struct supervisor *sv, const char *status)
{
	notify_ready(status);
	sv->watchdog_ms = notify_watchdog_usec() / 2000;
	snprintf(sv->last_status, sizeof(sv->last_status), "%s", status);
	sv->next_status_ms = util_mono_ms() + STATUS_EVERY_MS;
}

void supervisor_reloaded(const struct supervisor *sv)
{
	notify_ready(sv->last_status);
}

/* A one-line summary for systemd's STATUS= (what `systemctl status` shows). */
static void format_status(const struct supervisor *sv, char *buf, size_t len)
{
	int connected = 0;

	for (int i = 0; i < sv->nworkers; i++)
		connected += atomic_load(&sv->workers[i].connected) != 0;
	snprintf(buf, len,
	         "%d/%d workers connected; %llu events handled (%llu retried, %llu "
	         "dead-lettered)",
	         connected, sv->nworkers, (unsigned long long)atomic_load(&stats.processed),
	         (unsigned long long)atomic_load(&stats.retried),
	         (unsigned long long)atomic_load(&stats.dead_lettered));
}

void supervisor_tick(struct supervisor *sv)
{
	int64_t now = util_mono_ms();
	char why[200];

	if (sv->watchdog_ms && now >= sv->next_ping_ms) {
		sv->next_ping_ms = now + (int64_t)sv->watchdog_ms;
		if (liveness_loops_turning(sv->rt, sv->workers, sv->nworkers, sv->relay, why,
		                           sizeof(why))) {
			if (sv->stalled)
				log_kv(LOG_NOTICE, "claim loops turning again: watchdog fed", NULL);
			sv->stalled = false;
			notify_watchdog();
		} else if (!sv->stalled) {
			log_kv(LOG_ERROR, "watchdog not fed: a loop is stalled", "reason", why,
			       NULL);
			sv->stalled = true;
		}
	}
	if (now >= sv->next_status_ms) {
		char line[256];

		sv->next_status_ms = now + STATUS_EVERY_MS;
		format_status(sv, line, sizeof(line));
		if (strcmp(line, sv->last_status) != 0) {
			notify_status(line);
			snprintf(sv->last_status, sizeof(sv->last_status), "%s", line);
		}
	}
}
