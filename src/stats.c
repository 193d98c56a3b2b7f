/* stats.c -- the process-wide counters (see stats.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "stats.h"

struct stats stats;
