/*
 * notify.h -- tell systemd what the daemon is doing (sd_notify(3)):
 * READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1. Every call is a
 * no-op when NOTIFY_SOCKET is unset or the build has no libsystemd.
 */
#ifndef PGEVENTD_NOTIFY_H
#define PGEVENTD_NOTIFY_H

#include <stdint.h>

/* READY=1 with a STATUS= line. */
void notify_ready(const char *status);

/* A STATUS= line alone. */
void notify_status(const char *status);

/* RELOADING=1 with MONOTONIC_USEC= (the clock of the reload's start). */
void notify_reloading(void);

/* STOPPING=1 with a STATUS= line. */
void notify_stopping(const char *status);

/* WATCHDOG=1: only while the claim loops are turning. */
void notify_watchdog(void);

/* The watchdog interval systemd expects pings within (WATCHDOG_USEC, for
 * this process), in microseconds; 0 when the watchdog is off. */
uint64_t notify_watchdog_usec(void);

#endif
