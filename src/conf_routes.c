/*
 * conf_routes.c -- the `routes` list of the configuration: read, checked
 * against the C handlers of the enabled packs, matched, released. What
 * runs a route is routes.c.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "conf_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers/registry.h"
#include "routes.h"
#include "webhook.h"

/* Most routes one configuration may hold. */
#define ROUTES_MAX 256

static bool route_fail(char *err, size_t errlen, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static bool route_fail(char *err, size_t errlen, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s:%d: ", file, line);

	if (n < 0 || (size_t)n >= errlen)
		return false;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

/* One part of a function name: an identifier PostgreSQL folds to lower
 * case, or a double-quoted one ("" for a quote). Returns the end, or NULL. */
static const char *name_part(const char *p)
{
	if (*p == '"') {
		const char *start = ++p;

		for (;;) {
			if (!*p)
				return NULL;
			if (*p == '"' && p[1] == '"') {
				p += 2;
				continue;
			}
			if (*p == '"')
				return p > start ? p + 1 : NULL;
			p++;
		}
	}
	if (!(isalpha((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80))
		return NULL;
	while (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80)
		p++;
	return p;
}

/* "fn" or "schema.fn", each part plain or double-quoted: no argument
 * list, no spaces, nothing else (the signature is pgeventd's to fix). */
static bool call_name_ok(const char *s)
{
	const char *p = name_part(s);

	if (p && *p == '.')
		p = name_part(p + 1);
	return p && *p == '\0';
}

static void route_release(struct route *r)
{
	conf_strlist_release(&r->events);
	free(r->call);
	free(r->name);
	free(r->signature);
	free(r->one_sql);
	free(r->group_sql);
	memset(r, 0, sizeof(*r));
}

void routes_release(struct route_list *l)
{
	for (int i = 0; i < l->n; i++)
		route_release(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static bool read_route(struct route *r, const config_setting_t *g, int index, const char *file,
                       char *err, size_t errlen)
{
	const config_setting_t *ev, *call;
	char key[64];

	r->index = index;
	r->line = config_setting_source_line(g);
	snprintf(key, sizeof(key), "routes[%d]", index);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return route_fail(err, errlen, file, r->line,
		                  "%s: must be a group { events = [\"type.*\"]; call = "
		                  "\"schema.function\"; }",
		                  key);
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "events") != 0 && strcmp(name, "call") != 0)
			return route_fail(err, errlen, file, config_setting_source_line(s),
			                  "%s.%s: unknown key (a route has events and call)", key,
			                  name);
	}
	ev = config_setting_get_member(g, "events");
	call = config_setting_get_member(g, "call");
	if (!ev)
		return route_fail(err, errlen, file, r->line, "%s.events: missing", key);
	if (!call)
		return route_fail(err, errlen, file, r->line, "%s.call: missing", key);
	if ((config_setting_type(ev) != CONFIG_TYPE_ARRAY &&
	     config_setting_type(ev) != CONFIG_TYPE_LIST) ||
	    config_setting_length(ev) == 0)
		return route_fail(err, errlen, file, config_setting_source_line(ev),
		                  "%s.events: must be a non-empty list of event-type patterns, "
		                  "e.g. [\"intro.*\"]",
		                  key);
	for (int i = 0; i < config_setting_length(ev); i++) {
		const config_setting_t *el = config_setting_get_elem(ev, (unsigned)i);
		const char *pat;

		if (config_setting_type(el) != CONFIG_TYPE_STRING)
			return route_fail(err, errlen, file, config_setting_source_line(el),
			                  "%s.events: element %d must be a string", key, i + 1);
		pat = config_setting_get_string(el);
		if (!pat[0])
			return route_fail(err, errlen, file, config_setting_source_line(el),
			                  "%s.events: element %d is empty", key, i + 1);
		if (!conf_strlist_push(&r->events, pat))
			return route_fail(err, errlen, file, r->line, "%s: out of memory", key);
	}
	if (config_setting_type(call) != CONFIG_TYPE_STRING)
		return route_fail(err, errlen, file, config_setting_source_line(call),
		                  "%s.call: must be a string, e.g. \"app.on_intro\"", key);
	if (!call_name_ok(config_setting_get_string(call)))
		return route_fail(err, errlen, file, config_setting_source_line(call),
		                  "%s.call: \"%s\" is not a function name: \"function\" or "
		                  "\"schema.function\", without an argument list",
		                  key, config_setting_get_string(call));
	r->call = strdup(config_setting_get_string(call));
	if (r->call && asprintf(&r->name, "sql:%s", r->call) < 0)
		r->name = NULL;
	if (!r->call || !r->name)
		return route_fail(err, errlen, file, r->line, "%s: out of memory", key);
	r->entry.event_type = r->events.items[0];
	r->entry.name = r->name;
	r->entry.flags = HANDLER_F_NONE;
	r->entry.description = "SQL route";
	return true;
}

bool conf_routes_read(struct config *cfg, const config_setting_t *s, const char *file, char *err,
                      size_t errlen)
{
	struct route_list *l = &cfg->routes;
	int n;

	routes_release(l);
	if (config_setting_type(s) != CONFIG_TYPE_LIST &&
	    config_setting_type(s) != CONFIG_TYPE_ARRAY)
		return route_fail(err, errlen, file, config_setting_source_line(s),
		                  "routes: must be a list ( { events = [\"type.*\"]; call = "
		                  "\"schema.function\"; }, ... )");
	n = config_setting_length(s);
	if (n > ROUTES_MAX)
		return route_fail(err, errlen, file, config_setting_source_line(s),
		                  "routes: at most %d routes", ROUTES_MAX);
	if (n == 0)
		return true;
	l->items = calloc((size_t)n, sizeof(*l->items));
	if (!l->items)
		return route_fail(err, errlen, file, 0, "routes: out of memory");
	for (int i = 0; i < n; i++) {
		l->n = i + 1;
		if (!read_route(&l->items[i], config_setting_get_elem(s, (unsigned)i), i + 1, file,
		                err, errlen))
			return false;
	}
	return true;
}

/* A pattern written twice (in one route or two), or a pattern that takes
 * an event type a C handler of an enabled pack routes: each event type
 * has one handler, and which one must not depend on the order of a list. */
bool conf_routes_check(const struct config *cfg, const char *file, char *err, size_t errlen)
{
	const struct route_list *l = &cfg->routes;
	const struct handler_pack *packs[64];
	size_t npacks =
	    registry_enabled_packs((const char *const *)cfg->packs.items, cfg->packs.n, packs, 64);

	for (int i = 0; i < l->n; i++) {
		const struct route *r = &l->items[i];

		for (int k = 0; k < r->events.n; k++) {
			const char *pat = r->events.items[k];

			for (int j = 0; j <= i; j++) {
				const struct route *o = &l->items[j];

				for (int m = 0; m < (j == i ? k : o->events.n); m++)
					if (strcmp(o->events.items[m], pat) == 0)
						return route_fail(
						    err, errlen, file, r->line,
						    "routes[%d].events: pattern \"%s\" is also in "
						    "routes[%d] (line %d, call %s)",
						    r->index, pat, o->index, o->line, o->call);
			}
			for (size_t p = 0; p < npacks; p++)
				for (const struct handler_entry *e = packs[p]->handlers;
				     e && e->event_type; e++)
					if (webhook_pattern_match(pat, e->event_type))
						return route_fail(
						    err, errlen, file, r->line,
						    "routes[%d].events: event type %s has both the "
						    "C "
						    "handler %s (pack %s) and the SQL route %s "
						    "(pattern \"%s\"); remove one",
						    r->index, e->event_type, e->name,
						    packs[p]->name, r->call, pat);
		}
	}
	return true;
}

const struct route *routes_match(const struct route_list *l, const char *event_type,
                                 const char **pattern)
{
	for (int i = 0; i < l->n; i++)
		for (int k = 0; k < l->items[i].events.n; k++)
			if (webhook_pattern_match(l->items[i].events.items[k], event_type)) {
				if (pattern)
					*pattern = l->items[i].events.items[k];
				return &l->items[i];
			}
	return NULL;
}
