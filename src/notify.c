/*
 * notify.c -- sd_notify(3) through libsystemd. The messages go to the
 * datagram socket systemd names in NOTIFY_SOCKET; a failure to send is
 * not an error for the daemon (systemd may not be watching), so results
 * are ignored except at debug level.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "notify.h"

#include <stdio.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

static void send_state(const char *state)
{
#ifdef HAVE_SYSTEMD
	int rc = sd_notify(0, state);

	if (rc < 0 && log_enabled(LOG_DEBUG))
		log_kv(LOG_DEBUG, "sd_notify failed", "state", state, NULL);
#else
	(void)state;
#endif
}

/* `head` (may be "") followed by a STATUS= line. */
static void send_with_status(const char *head, const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%sSTATUS=%s", head, status);
	send_state(buf);
}

void notify_ready(const char *status)
{
	send_with_status("READY=1\n", status);
}

void notify_status(const char *status)
{
	send_with_status("", status);
}

void notify_reloading(void)
{
	struct timespec ts;
	char buf[128];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000);
	send_state(buf);
}

void notify_stopping(const char *status)
{
	send_with_status("STOPPING=1\n", status);
}

void notify_watchdog(void)
{
	send_state("WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
#ifdef HAVE_SYSTEMD
	uint64_t usec = 0;

	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us */
	if (sd_watchdog_enabled(0, &usec) > 0)
		return usec;
#endif
	return 0;
}
