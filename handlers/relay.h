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

/* The registry row the claim loop runs for relayed event types. */
extern const struct handler_entry relay_entry;

/* Whether relay.event_types routes `event_type` to the relay. */
bool relay_wants(const struct relay_config *rc, const char *event_type);

enum handler_result relay_handler(struct handler_ctx *ctx, const struct event *ev);

#endif
