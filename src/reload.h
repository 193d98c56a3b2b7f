/* reload.h -- what a SIGHUP does: re-read the configuration file and publish it. */
#ifndef PGEVENTD_RELOAD_H
#define PGEVENTD_RELOAD_H

#include "runtime.h"

/*
 * Re-read `config_path` (NULL: nothing to re-read, logged) and publish it
 * in `rt`: reloadable keys take effect at each thread's next turn, the
 * others keep their running values (each changed key is logged, applied
 * or not). An invalid file changes nothing. Main thread only.
 */
void reload_config(const char *config_path, struct runtime *rt);

#endif
