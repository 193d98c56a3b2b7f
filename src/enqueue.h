/*
 * enqueue.h -- hands events to the relay: the SQL that queues one deliveries
 * row per matching enabled subscription, run in the batch transaction by the
 * worker (src/relay.c sends them).
 */
#ifndef PGEVENTD_ENQUEUE_H
#define PGEVENTD_ENQUEUE_H

#include <stdbool.h>

#include "conf.h"

/* Queue one deliveries row per matching enabled subscription for each
 * event of `$1` (a uuid[] literal), inside the batch transaction. */
extern const char enqueue_deliveries_sql[];

/* Whether relay.event_types routes `event_type` to the relay. */
bool enqueue_wants(const struct relay_config *rc, const char *event_type);

#endif
