/* ordering.c -- which event types are ordered (see ordering.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "ordering.h"

#include <stdlib.h>
#include <string.h>

#include "webhook.h"

bool ordering_enabled(const struct ordering_config *oc)
{
	return oc->by_aggregate.n > 0 || oc->by_ordering_key.n > 0;
}

char *ordering_like_array(const struct strlist *l)
{
	size_t need = 3;
	char *out, *o;

	for (int i = 0; i < l->n; i++)
		need += 4 * strlen(l->items[i]) + 3;
	out = malloc(need);
	if (!out)
		return NULL;
	o = out;
	*o++ = '{';
	for (int i = 0; i < l->n; i++) {
		if (i > 0)
			*o++ = ',';
		*o++ = '"';
		for (const char *c = l->items[i]; *c; c++) {
			if (*c == '*') {
				*o++ = '%';
				continue;
			}
			/* LIKE's escape, then the array literal's for it */
			if (*c == '%' || *c == '_' || *c == '\\') {
				*o++ = '\\';
				*o++ = '\\';
			}
			if (*c == '"' || *c == '\\')
				*o++ = '\\';
			*o++ = *c;
		}
		*o++ = '"';
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

bool ordering_skips_dead(const struct ordering_config *oc, const char *event_type)
{
	for (int i = 0; i < oc->skip_dead.n; i++)
		if (webhook_pattern_match(oc->skip_dead.items[i], event_type))
			return true;
	return false;
}
