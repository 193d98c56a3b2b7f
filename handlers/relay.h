/*
 * relay.h -- the relay handler: hands an event to the webhook relay by
 * inserting one deliveries row per matching enabled subscription, inside
 * the event's batch transaction (src/relay.c sends them).
 */
#ifndef PGEVENTD_HANDLERS_RELAY_H
#define PGEVENTD_HANDLERS_RELAY_H

#include <stdbool.h>

#include "handlers/handler.h"
#include "src/conf.h"

/* Queue one deliveries row per matching enabled subscription for each
 * event of `$1` (a uuid[] literal), inside the batch transaction. */
extern const char relay_queue_sql[];

/* Whether relay.event_types routes `event_type` to the relay. */
bool relay_wants(const struct relay_config *rc, const char *event_type);

#endif
