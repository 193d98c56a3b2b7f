/*
 * daemon.h -- `pgeventd run`: start-up (database, schema check, threads),
 * the main loop that takes the signals and supervises the threads, and
 * the shutdown.
 */
#ifndef PGEVENTD_DAEMON_H
#define PGEVENTD_DAEMON_H

#include <stdbool.h>

#include "conf.h"

/*
 * Run the daemon on `cfg` (from runtime_config_new, loaded; owned from
 * now on) until a signal stops it, or, with `once`, until everything due
 * is handled. `config_path` (may be NULL) is what a SIGHUP re-reads.
 * Returns the exit status: 0; 1 when a shutdown had to roll batches
 * back; EX_DATAERR when an applied migration was changed; EX_UNAVAILABLE
 * when the database or the health address cannot be had (for run --once,
 * a database out of reach for 30 s); EX_TEMPFAIL when migrations are
 * pending or a signal stopped run --once early; EX_SOFTWARE otherwise.
 */
int daemon_run(struct config *cfg, const char *config_path, bool once);

#endif
