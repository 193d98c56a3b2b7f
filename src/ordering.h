/*
 * ordering.h -- ordered event types (ordering.* keys): which events run one
 * at a time per key, and what a dead-lettered head does to its key. The
 * claim (claim.c) computes keys in SQL from these patterns; see
 * migrations/0007_ordering.sql.
 */
#ifndef PGEVENTD_ORDERING_H
#define PGEVENTD_ORDERING_H

#include <stdbool.h>

#include "conf.h"

/* Whether any event type is ordered. */
bool ordering_enabled(const struct ordering_config *oc);

/*
 * The patterns of `l` as a text[] literal of LIKE patterns ("order.*"
 * becomes "order.%", with %, _ and \ escaped), for the claim's statements:
 * malloc'd, the caller frees it; NULL when out of memory.
 */
char *ordering_like_array(const struct strlist *l);

/* Whether a dead-lettered head of `event_type` lets its key go on (skip)
 * rather than park it (block, the default). */
bool ordering_skips_dead(const struct ordering_config *oc, const char *event_type);

#endif
