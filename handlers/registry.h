/*
 * registry.h -- routing of event types to handlers, built at start-up
 * from the registry tables of the enabled packs.
 */
#ifndef PGEVENTD_REGISTRY_H
#define PGEVENTD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "handlers/handler.h"

/* The enabled handlers sorted by event type, for binary search. */
struct registry {
	const struct handler_entry **entries; /* owned array of borrowed rows */
	const struct handler_pack **packs;    /* parallel: the pack of each row */
	size_t n;
};

/* The core pack: always enabled (handlers/registry.c). */
extern const struct handler_pack core_pack;

/*
 * The packs this binary links (handlers/packs.c for the daemon,
 * tests/test_packs.c for the test binaries), handed over by main() before
 * anything reads them. The daemon's modules know packs only through the
 * functions below.
 */
void registry_link_packs(const struct handler_pack *const *packs);

/* A linked pack by name, or NULL. */
const struct handler_pack *registry_linked_pack(const char *name);

/* The linked packs' names, ", "-separated, into `buf` (for messages). */
const char *registry_linked_names(char *buf, size_t len);

/* The linked packs that `enabled` (pack names) turns on, core always, in
 * link order, into out[0..max); returns how many. */
size_t registry_enabled_packs(const char *const *enabled, int nenabled,
                              const struct handler_pack **out, size_t max);

/* Build from the packs `enabled` turns on. Fails when two enabled packs
 * route the same event type. */
bool registry_build(struct registry *r, const char *const *enabled, int nenabled, char *err,
                    size_t errlen);
void registry_release(struct registry *r);

/* The position of `event_type` in entries[], or -1 (metrics label it). */
int registry_index(const struct registry *r, const char *event_type);

#endif
