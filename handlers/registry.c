/*
 * registry.c -- the core pack's registry table, the packs this binary
 * links, and the lookup built from the enabled ones.
 *
 * To route a new event type to a core handler, add a row to core_handlers
 * below with HANDLER("event.type", function, flags, "what it does"), in
 * event-type order for readers (registry_build sorts its own index).
 * Handlers of a domain belong in a pack of their own instead: see
 * handlers/handler.h.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "handlers/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/core.h"

extern const struct migration core_migrations[];

static const struct handler_entry core_handlers[] = {
	HANDLER("pgeventd.log", core_log, HANDLER_F_NONE,
	        "logs the event's id, type and payload size"),
	HANDLER("pgeventd.noop", core_noop, HANDLER_F_NONE,
	        "accepts the event and does nothing (benchmarks)"),
	HANDLER("pgeventd.probe", core_probe, HANDLER_F_JSON,
	        "smoke test: succeeds, or fails as the payload's \"fail\" asks"),
	{ NULL, NULL, 0, NULL, NULL },
};

const struct handler_pack core_pack = {
	"core",
	"pgeventd's own handlers and tables (events, dead letters)",
	core_handlers,
	core_migrations,
};

/* Set once by main() before any other thread runs; read-only after. */
static const struct handler_pack *const *linked_packs;

void registry_link_packs(const struct handler_pack *const *packs)
{
	linked_packs = packs;
}

const struct handler_pack *registry_linked_pack(const char *name)
{
	for (const struct handler_pack *const *p = linked_packs; p && *p; p++)
		if (strcmp((*p)->name, name) == 0)
			return *p;
	return NULL;
}

const char *registry_linked_names(char *buf, size_t len)
{
	size_t n = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (const struct handler_pack *const *p = linked_packs; p && *p && n < len; p++) {
		int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", (*p)->name);

		if (w < 0)
			break;
		n += (size_t)w;
	}
	return buf;
}

static bool pack_enabled(const char *name, const char *const *enabled, int nenabled)
{
	if (strcmp(name, core_pack.name) == 0)
		return true;
	for (int i = 0; i < nenabled; i++)
		if (strcmp(enabled[i], name) == 0)
			return true;
	return false;
}

size_t registry_enabled_packs(const char *const *enabled, int nenabled,
                              const struct handler_pack **out, size_t max)
{
	size_t n = 0;

	for (const struct handler_pack *const *p = linked_packs; p && *p && n < max; p++)
		if (pack_enabled((*p)->name, enabled, nenabled))
			out[n++] = *p;
	return n;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct handler_entry *const *x = a, *const *y = b;

	return strcmp((*x)->event_type, (*y)->event_type);
}

bool registry_build(struct registry *r, const char *const *enabled, int nenabled, char *err,
                    size_t errlen)
{
	size_t cap = 0;

	memset(r, 0, sizeof(*r));
	for (const struct handler_pack *const *p = linked_packs; p && *p; p++)
		for (const struct handler_entry *e = (*p)->handlers; e && e->event_type; e++)
			cap++;
	r->entries = calloc(cap ? cap : 1, sizeof(*r->entries));
	r->packs = calloc(cap ? cap : 1, sizeof(*r->packs));
	if (!r->entries || !r->packs) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (const struct handler_pack *const *p = linked_packs; p && *p; p++) {
		if (!pack_enabled((*p)->name, enabled, nenabled))
			continue;
		for (const struct handler_entry *e = (*p)->handlers; e && e->event_type; e++) {
			r->packs[r->n] = *p;
			r->entries[r->n++] = e;
		}
	}
	/* Sort entries and packs together (insertion sort: a few dozen rows). */
	for (size_t i = 1; i < r->n; i++) {
		for (size_t j = i; j > 0 && cmp_entry(&r->entries[j - 1], &r->entries[j]) > 0;
		     j--) {
			const struct handler_entry *te = r->entries[j];
			const struct handler_pack *tp = r->packs[j];

			r->entries[j] = r->entries[j - 1];
			r->packs[j] = r->packs[j - 1];
			r->entries[j - 1] = te;
			r->packs[j - 1] = tp;
		}
	}
	for (size_t i = 1; i < r->n; i++) {
		if (strcmp(r->entries[i - 1]->event_type, r->entries[i]->event_type) == 0) {
			snprintf(err, errlen, "event type %s is routed by both pack %s and pack %s",
			         r->entries[i]->event_type, r->packs[i - 1]->name,
			         r->packs[i]->name);
			goto fail;
		}
	}
	return true;
fail:
	registry_release(r);
	return false;
}

void registry_release(struct registry *r)
{
	free(r->entries);
	free(r->packs);
	memset(r, 0, sizeof(*r));
}

int registry_index(const struct registry *r, const char *event_type)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(event_type, r->entries[mid]->event_type);

		if (c == 0)
			return (int)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}
