/*
 * buddy.h -- the buddy pack: the Buddy System's eight buddy.* event types
 * written into the buddy_* tables (handlers/buddy/README.md is the
 * contract: tables, event types, payload fields, validation, idempotency).
 */
#ifndef PGEVENTD_BUDDY_H
#define PGEVENTD_BUDDY_H

#include <stdbool.h>
#include <stddef.h>

#include "handlers/handler.h"

/* Longest id the pack accepts, in characters (the varchar(100) columns). */
#define BUDDY_ID_MAX 100
/* Largest durationMinutes accepted: a year. */
#define BUDDY_MINUTES_MAX 525600

/* Listed in handlers/packs.c and tests/test_packs.c; enabled with
 * `packs = ["buddy"]`. */
extern const struct handler_pack buddy_pack;

/*
 * Check `ev` against the rules of its event type: the payload's fields
 * (presence, JSON type, non-empty ids, ranges, ISO 8601 timestamps) and
 * metadata.correlationId. Pure: no I/O, no allocation that outlives the
 * call. Returns false with the message the handler would dead-letter the
 * event with in `err`, e.g.
 * "buddy.feedback.submitted: rating must be an integer 1..5, got 9".
 */
bool buddy_validate(const struct event *ev, char *err, size_t errlen);

#endif
