/*
 * conf_show.c -- a configuration shown and merged: every key rendered for
 * check-config --print and /health (secrets as ***, the conninfo with its
 * passwords cut out), and a reload's new configuration given the running
 * values of the keys that need a restart.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "conf_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "util.h"

/* A conninfo with its password replaced by ***: parsed by libpq, so
 * both "key=value" strings and URIs are handled, and with the passwords
 * cut out of every other value too (a dbname may itself be a URI with
 * one: db_redact). */
static void redact_conninfo(const char *ci, char *out, size_t outlen)
{
	PQconninfoOption *opts = PQconninfoParse(ci, NULL);
	size_t n = 0;

	out[0] = '\0';
	if (!opts) {
		snprintf(out, outlen, "***");
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		char v[512];

		if (!o->val || !*o->val)
			continue;
		if (strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0)
			snprintf(v, sizeof(v), "***");
		else
			db_redact(ci, o->val, v, sizeof(v));
		int w = snprintf(out + n, outlen - n, "%s%s=%s", n ? " " : "", o->keyword, v);
		if (w < 0 || (size_t)w >= outlen - n)
			break;
		n += (size_t)w;
	}
	PQconninfoFree(opts);
}

static void render(const struct config *cfg, const struct cfg_key *k, char *buf, size_t len)
{
	const void *p = conf_cfield(cfg, k);

	switch (k->type) {
	case CFG_INT:
		snprintf(buf, len, "%d", *(const int *)p);
		break;
	case CFG_LLONG:
		snprintf(buf, len, "%lld", *(const long long *)p);
		break;
	case CFG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
		break;
	case CFG_DOUBLE:
		snprintf(buf, len, "%g", *(const double *)p);
		break;
	case CFG_ENUM:
		snprintf(buf, len, "%s", k->names[*(const int *)p]);
		break;
	case CFG_STRING: {
		const char *s = *(char *const *)p;

		if (!s)
			snprintf(buf, len, "%s", "");
		else if (k->flags & CFG_SECRET)
			snprintf(buf, len, "***");
		else if (k->flags & CFG_CONNINFO)
			redact_conninfo(s, buf, len);
		else
			snprintf(buf, len, "%s", s);
		break;
	}
	case CFG_DURATION:
		conf_format_duration(*(const long long *)p, buf, len);
		break;
	case CFG_INTLIST: {
		const struct intlist *l = p;
		size_t n = 0;

		buf[0] = '\0';
		for (int i = 0; i < l->n && n < len; i++) {
			int w = snprintf(buf + n, len - n, "%s%lld", i ? "," : "", l->v[i]);
			if (w < 0)
				break;
			n += (size_t)w;
		}
		break;
	}
	case CFG_STRLIST: {
		const struct strlist *l = p;
		size_t n = 0;

		buf[0] = '\0';
		for (int i = 0; i < l->n && n < len; i++) {
			int w = snprintf(buf + n, len - n, "%s%s", i ? "," : "", l->items[i]);
			if (w < 0)
				break;
			n += (size_t)w;
		}
		break;
	}
	}
}

void conf_visit(const struct config *cfg, conf_visit_fn fn, void *arg)
{
	struct config defaults;

	conf_init(&defaults);
	for (size_t i = 0; i < conf_nkeys; i++) {
		char val[1024], def[256];

		render(cfg, &conf_keys[i], val, sizeof(val));
		render(&defaults, &conf_keys[i], def, sizeof(def));
		fn(arg, conf_keys[i].path, val, def, (conf_keys[i].flags & CFG_RELOAD) != 0,
		   conf_keys[i].help);
	}
	conf_release(&defaults);
}

/* Deep-copy the value of key `k` from `from` into `to`. */
static bool copy_value(struct config *to, const struct config *from, const struct cfg_key *k)
{
	void *dst = conf_field(to, k);
	const void *src = conf_cfield(from, k);

	switch (k->type) {
	case CFG_STRING: {
		const char *v = *(char *const *)src;
		char *dup = v ? strdup(v) : NULL;

		if (v && !dup)
			return false;
		free(*(char **)dst);
		*(char **)dst = dup;
		return true;
	}
	case CFG_STRLIST: {
		const struct strlist *l = src;
		struct strlist copy = { NULL, 0 };

		for (int i = 0; i < l->n; i++)
			if (!conf_strlist_push(&copy, l->items[i])) {
				conf_strlist_release(&copy);
				return false;
			}
		conf_strlist_release(dst);
		*(struct strlist *)dst = copy;
		return true;
	}
	case CFG_INTLIST:
		*(struct intlist *)dst = *(const struct intlist *)src;
		return true;
	case CFG_LLONG:
		*(long long *)dst = *(const long long *)src;
		return true;
	case CFG_INT:
		*(int *)dst = *(const int *)src;
		return true;
	case CFG_DURATION:
		*(long long *)dst = *(const long long *)src;
		return true;
	case CFG_BOOL:
		*(bool *)dst = *(const bool *)src;
		return true;
	case CFG_DOUBLE:
		*(double *)dst = *(const double *)src;
		return true;
	case CFG_ENUM:
		*(int *)dst = *(const int *)src;
		return true;
	}
	return false;
}

/* Whether key `k` has the same value in both: the raw values, not their
 * renderings (which hide a conninfo's password and are cut at a length). */
static bool same_value(const struct config *a, const struct config *b, const struct cfg_key *k)
{
	const void *pa = conf_cfield(a, k), *pb = conf_cfield(b, k);

	switch (k->type) {
	case CFG_STRING: {
		const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;

		return (!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0);
	}
	case CFG_STRLIST: {
		const struct strlist *la = pa, *lb = pb;

		if (la->n != lb->n)
			return false;
		for (int i = 0; i < la->n; i++)
			if (strcmp(la->items[i], lb->items[i]) != 0)
				return false;
		return true;
	}
	case CFG_INTLIST: {
		const struct intlist *la = pa, *lb = pb;

		return la->n == lb->n &&
		       memcmp(la->v, lb->v, sizeof(la->v[0]) * (size_t)la->n) == 0;
	}
	case CFG_INT:
		return *(const int *)pa == *(const int *)pb;
	case CFG_LLONG:
	case CFG_DURATION:
		return *(const long long *)pa == *(const long long *)pb;
	case CFG_BOOL:
		return *(const bool *)pa == *(const bool *)pb;
	case CFG_DOUBLE:
		return *(const double *)pa == *(const double *)pb;
	case CFG_ENUM:
		return *(const int *)pa == *(const int *)pb;
	}
	return false;
}

bool conf_keep_restart_keys(struct config *next, const struct config *cur,
                            void (*changed)(const char *key, const char *why))
{
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct cfg_key *k = &conf_keys[i];
		const char *why = NULL;

		if (same_value(cur, next, k))
			continue;
		if (!(k->flags & CFG_RELOAD))
			why = "takes effect at the next start";
		/* The relay thread starts with the daemon: new patterns apply at
		 * once, but turning the relay on or off needs a restart. */
		else if (k->offset == OFF(relay.event_types) &&
		         (cur->relay.event_types.n == 0) != (next->relay.event_types.n == 0))
			why = "turning the relay on or off takes effect at the next start";
		if (changed)
			changed(k->path, why);
		if (why && !copy_value(next, cur, k))
			return false;
	}
	return true;
}
