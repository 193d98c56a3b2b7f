/*
 * registry.h -- routing of event types to handlers, built at start-up
 * from the registry tables of the enabled packs.
 */
#ifndef PGEVENTD_REGISTRY_H
#define PGEVENTD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "handlers/handler.h"
#include "src/conf.h"

/* The enabled handlers sorted by event type, for binary search. */
struct registry {
	const struct handler_entry **entries; /* owned array of borrowed rows */
	const struct handler_pack **packs;    /* parallel: the pack of each row */
	size_t n;
};

/* The core pack: always enabled (handlers/registry.c). */
extern const struct handler_pack core_pack;

/* Build from the packs enabled in `cfg`. Fails when two enabled packs
 * route the same event type. */
bool registry_build(struct registry *r, const struct config *cfg, char *err, size_t errlen);
void registry_release(struct registry *r);

/* The position of `event_type` in entries[], or -1 (metrics label it). */
int registry_index(const struct registry *r, const char *event_type);

/* The handler row for `event_type`, or NULL. */
const struct handler_entry *registry_find(const struct registry *r, const char *event_type);

/* Find a linked pack by name, or NULL. */
const struct handler_pack *registry_pack(const char *name);

#endif
