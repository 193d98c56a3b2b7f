/*
 * metrics.c -- Prometheus registry: lock-free updates, text exposition
 * format 0.0.4. One concern over ~600 lines: the registry's series are
 * written by every thread without a lock and read by the renderer, and
 * keeping both sides of that protocol (the release/acquire publication of
 * a series, the bit patterns of its doubles) in one file is what makes it
 * checkable.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The hot path promises no lock: a 64-bit atomic that fell back to a libatomic
 * lock would break that (and the promise to call it from any thread). */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(double) == sizeof(uint64_t), "doubles are stored as 64-bit patterns");

/* Longest formatted number: "-2.2250738585072014e-308" is 24 characters. */
#define NUMBUF 32

struct metric {
	struct metric_family *family;
	enum metric_type type;         /* copy of family->type, read on the hot path */
	_Atomic(struct metric *) next; /* creation order; published with release */
	uint64_t hash;                 /* of the label values, to skip most strcmp on lookup */
	char **label_values;           /* family->nlabels strings, owned */
	_Atomic uint64_t bits;         /* counter/gauge value, histogram sum: a double's bits */
	_Atomic uint64_t buckets[];    /* histogram only: nbounds + 1 counts, not cumulative */
};

struct metric_family {
	_Atomic(struct metric_family *) next; /* creation order; published with release */
	enum metric_type type;
	char *name; /* owned */
	char *help; /* owned */
	size_t nlabels;
	char **label_names; /* nlabels strings, owned */
	size_t nbounds;
	double *bounds;                /* nbounds upper bounds, owned; +Inf is implicit */
	char (*le)[NUMBUF];            /* the bounds as rendered, then "+Inf"; owned */
	pthread_mutex_t lock;          /* serialises series creation */
	_Atomic(struct metric *) head; /* series, read without the lock */
	struct metric *tail;           /* under lock */
};

struct metrics {
	pthread_mutex_t lock;                 /* serialises family creation */
	_Atomic(struct metric_family *) head; /* read without the lock */
	struct metric_family *tail;           /* under lock */
};

/* ---- doubles in 64-bit atomics ------------------------------------------ */

static uint64_t dbits(double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return u;
}

static double bitsd(uint64_t u)
{
	double v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

/* Relaxed order is enough: each value is independent, and readers that need
 * to see a thread's updates (tests) join it first. */
static void atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- names ---------------------------------------------------------------- */

static bool is_alpha_(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* [a-zA-Z_][a-zA-Z0-9_]* (labels), with ':' allowed too for metric names;
 * a "__" prefix is reserved for Prometheus itself. */
static bool valid_name(const char *s, bool colons)
{
	if (!s || !(is_alpha_(*s) || (colons && *s == ':')))
		return false;
	if (s[0] == '_' && s[1] == '_')
		return false;
	for (s++; *s; s++)
		if (!(is_alpha_(*s) || is_digit(*s) || (colons && *s == ':')))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *const histogram_suffixes[] = { "_bucket", "_sum", "_count" };

/* Would the exposition hold two samples of the same name? A histogram also
 * owns its name plus each of histogram_suffixes. */
static bool names_clash(const struct metric_family *f, enum metric_type type, const char *name)
{
	size_t n = strlen(f->name), k = strlen(name);

	if (strcmp(f->name, name) == 0)
		return true;
	for (size_t i = 0; i < sizeof(histogram_suffixes) / sizeof(histogram_suffixes[0]); i++) {
		const char *sfx = histogram_suffixes[i];

		if (f->type == METRIC_HISTOGRAM && k > n && strncmp(name, f->name, n) == 0 &&
		    strcmp(name + n, sfx) == 0)
			return true;
		if (type == METRIC_HISTOGRAM && n > k && strncmp(f->name, name, k) == 0 &&
		    strcmp(f->name + k, sfx) == 0)
			return true;
	}
	return false;
}

static bool valid_labels(enum metric_type type, size_t nlabels, const char *const *names)
{
	if (nlabels > 0 && !names)
		return false;
	for (size_t i = 0; i < nlabels; i++) {
		if (!valid_name(names[i], false))
			return false;
		if (type == METRIC_HISTOGRAM && strcmp(names[i], "le") == 0)
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return false;
	}
	return true;
}

static bool valid_bounds(enum metric_type type, const double *bounds, size_t nbounds)
{
	if (nbounds == 0)
		return true;
	if (type != METRIC_HISTOGRAM || !bounds)
		return false;
	for (size_t i = 0; i < nbounds; i++) {
		if (!isfinite(bounds[i]))
			return false;
		if (i > 0 && !(bounds[i] > bounds[i - 1]))
			return false;
	}
	return true;
}

/* ---- numbers ---------------------------------------------------------------- */

/*
 * Integers up to 2^53 (where every integer is a double) in plain digits; other
 * values in the first of %.15g, %.16g, %.17g that reads back to the same
 * double, so 0.1 stays "0.1" (%.17g alone would print 0.10000000000000001). Assumes the "C" numeric
 * locale, which pgeventd never changes.
 */
static void format_double(char buf[NUMBUF], double v)
{
	if (isnan(v)) {
		strcpy(buf, "NaN");
		return;
	}
	if (isinf(v)) {
		strcpy(buf, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(int64_t)v) {
		snprintf(buf, NUMBUF, "%" PRId64, (int64_t)v);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, NUMBUF, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* ---- registry ----------------------------------------------------------- */

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		free(m);
		return NULL;
	}
	atomic_init(&m->head, NULL);
	return m;
}

static void series_free(struct metric *s, size_t nlabels)
{
	if (!s)
		return;
	if (s->label_values)
		for (size_t i = 0; i < nlabels; i++)
			free(s->label_values[i]);
	free(s->label_values);
	free(s);
}

/* Frees a family and its series; also used on a half-built family, where
 * label_names may be partly filled and the mutex not yet initialised. */
static void family_free(struct metric_family *f, bool mutex_ready)
{
	struct metric *s, *next;

	if (!f)
		return;
	for (s = atomic_load(&f->head); s; s = next) {
		next = atomic_load(&s->next);
		series_free(s, f->nlabels);
	}
	if (f->label_names)
		for (size_t i = 0; i < f->nlabels; i++)
			free(f->label_names[i]);
	free(f->label_names);
	free(f->bounds);
	free(f->le);
	free(f->name);
	free(f->help);
	if (mutex_ready)
		pthread_mutex_destroy(&f->lock);
	free(f);
}

void metrics_free(struct metrics *m)
{
	struct metric_family *f, *next;

	if (!m)
		return;
	for (f = atomic_load(&m->head); f; f = next) {
		next = atomic_load(&f->next);
		family_free(f, true);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* A family with copies of the arguments, not yet in the registry; NULL when
 * out of memory. The arguments are already validated. */
static struct metric_family *family_new(enum metric_type type, const char *name, const char *help,
                                        size_t nlabels, const char *const *label_names,
                                        const double *bounds, size_t nbounds)
{
	struct metric_family *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->type = type;
	f->nlabels = nlabels;
	f->nbounds = nbounds;
	atomic_init(&f->next, NULL);
	atomic_init(&f->head, NULL);
	f->name = strdup(name);
	f->help = strdup(help);
	if (!f->name || !f->help)
		goto fail;
	if (nlabels > 0) {
		f->label_names = calloc(nlabels, sizeof(*f->label_names));
		if (!f->label_names)
			goto fail;
		for (size_t i = 0; i < nlabels; i++)
			if (!(f->label_names[i] = strdup(label_names[i])))
				goto fail;
	}
	if (type == METRIC_HISTOGRAM) {
		f->le = calloc(nbounds + 1, sizeof(*f->le));
		if (!f->le)
			goto fail;
		if (nbounds > 0) {
			f->bounds = malloc(nbounds * sizeof(*f->bounds));
			if (!f->bounds)
				goto fail;
			memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
		}
		for (size_t i = 0; i < nbounds; i++)
			format_double(f->le[i], bounds[i]);
		strcpy(f->le[nbounds], "+Inf");
	}
	if (pthread_mutex_init(&f->lock, NULL) != 0)
		goto fail;
	return f;
fail:
	family_free(f, false);
	return NULL;
}

struct metric_family *metrics_family(struct metrics *m, enum metric_type type, const char *name,
                                     const char *help, size_t nlabels,
                                     const char *const *label_names, const double *bounds,
                                     size_t nbounds)
{
	struct metric_family *f = NULL, *g;

	if (!m || !help || !valid_name(name, true))
		return NULL;
	switch (type) {
	case METRIC_COUNTER:
		if (!ends_with(name, "_total"))
			return NULL;
		break;
	case METRIC_GAUGE:
		break;
	case METRIC_HISTOGRAM:
		for (size_t i = 0; i < sizeof(histogram_suffixes) / sizeof(histogram_suffixes[0]);
		     i++)
			if (ends_with(name, histogram_suffixes[i]))
				return NULL;
		break;
	default:
		return NULL;
	}
	if (!valid_labels(type, nlabels, label_names) || !valid_bounds(type, bounds, nbounds))
		return NULL;

	pthread_mutex_lock(&m->lock);
	for (g = atomic_load_explicit(&m->head, memory_order_relaxed); g;
	     g = atomic_load_explicit(&g->next, memory_order_relaxed))
		if (names_clash(g, type, name))
			goto out;
	f = family_new(type, name, help, nlabels, label_names, bounds, nbounds);
	if (!f)
		goto out;
	/* Release: a render that sees the pointer sees the whole family. */
	atomic_store_explicit(m->tail ? &m->tail->next : &m->head, f, memory_order_release);
	m->tail = f;
out:
	pthread_mutex_unlock(&m->lock);
	return f;
}

/* ---- series ------------------------------------------------------------- */

/* FNV-1a over the values, each followed by a 0xff byte (never in UTF-8). */
static uint64_t labels_hash(size_t n, const char *const *values)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
			h = (h ^ *p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}

static struct metric *series_find(struct metric_family *f, const char *const *values, uint64_t h)
{
	struct metric *s;
	size_t i;

	for (s = atomic_load_explicit(&f->head, memory_order_acquire); s;
	     s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		if (s->hash != h)
			continue;
		for (i = 0; i < f->nlabels; i++)
			if (strcmp(s->label_values[i], values[i]) != 0)
				break;
		if (i == f->nlabels)
			return s;
	}
	return NULL;
}

static struct metric *series_new(struct metric_family *f, const char *const *values, uint64_t h)
{
	size_t nb = f->type == METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
	struct metric *s = calloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));

	if (!s)
		return NULL;
	s->family = f;
	s->type = f->type;
	s->hash = h;
	atomic_init(&s->next, NULL);
	atomic_init(&s->bits, dbits(0.0));
	for (size_t i = 0; i < nb; i++)
		atomic_init(&s->buckets[i], 0);
	if (f->nlabels > 0) {
		s->label_values = calloc(f->nlabels, sizeof(*s->label_values));
		if (!s->label_values)
			goto fail;
		for (size_t i = 0; i < f->nlabels; i++)
			if (!(s->label_values[i] = strdup(values[i])))
				goto fail;
	}
	return s;
fail:
	series_free(s, f->nlabels);
	return NULL;
}

/* Lookups walk the list without the lock; creation re-checks under it, so two
 * threads asking for the same new labels get the same series. */
static struct metric *series_get(struct metric_family *f, const char *const *values)
{
	struct metric *s;
	uint64_t h;

	if (!f || (f->nlabels > 0 && !values))
		return NULL;
	for (size_t i = 0; i < f->nlabels; i++)
		if (!values[i])
			return NULL;
	h = labels_hash(f->nlabels, values);
	if ((s = series_find(f, values, h)))
		return s;

	pthread_mutex_lock(&f->lock);
	s = series_find(f, values, h);
	if (s)
		goto out;
	s = series_new(f, values, h);
	if (!s)
		goto out;
	/* Release: a lookup that sees the pointer sees the whole series. */
	atomic_store_explicit(f->tail ? &f->tail->next : &f->head, s, memory_order_release);
	f->tail = s;
out:
	pthread_mutex_unlock(&f->lock);
	return s;
}

struct metric *metrics_series(struct metric_family *f, const char *const *label_values)
{
	return series_get(f, label_values);
}

/* ---- hot path ------------------------------------------------------------- */

void metric_add(struct metric *s, double v)
{
	if (!s)
		return;
	if (s->type == METRIC_GAUGE || (s->type == METRIC_COUNTER && v >= 0))
		atomic_add_double(&s->bits, v);
}

void metric_set(struct metric *s, double v)
{
	if (s && s->type == METRIC_GAUGE)
		atomic_store_explicit(&s->bits, dbits(v), memory_order_relaxed);
}

/* Index of the first bound >= v (bounds are inclusive upper limits); NaN and
 * anything above the last bound go to the implicit +Inf bucket. */
static size_t bucket_index(const struct metric_family *f, double v)
{
	size_t lo = 0, hi = f->nbounds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v <= f->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void metric_observe(struct metric *s, double v)
{
	if (!s || s->type != METRIC_HISTOGRAM)
		return;
	atomic_fetch_add_explicit(&s->buckets[bucket_index(s->family, v)], 1, memory_order_relaxed);
	atomic_add_double(&s->bits, v);
}

static uint64_t histogram_count(const struct metric *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= s->family->nbounds; i++)
		n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
	return n;
}

double metric_value(const struct metric *s)
{
	if (!s)
		return 0;
	if (s->type == METRIC_HISTOGRAM)
		return (double)histogram_count(s);
	return bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed));
}

/* ---- rendering ---------------------------------------------------------- */

/* A growing output buffer; after a failed allocation every write is dropped
 * and `failed` stays set. */
struct sbuf {
	char *p; /* owned until handed to the caller */
	size_t len, cap;
	bool failed;
};

static bool sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + n < b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap <= b->len + n)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void sbuf_put(struct sbuf *b, const char *s, size_t n)
{
	if (!sbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_put(b, s, strlen(s));
}

static void sbuf_putd(struct sbuf *b, double v)
{
	char num[NUMBUF];

	format_double(num, v);
	sbuf_puts(b, num);
}

static void sbuf_putu(struct sbuf *b, uint64_t v)
{
	char num[NUMBUF];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	sbuf_puts(b, num);
}

/* Help text escapes \ and newline; label values also escape ". Invalid UTF-8
 * becomes U+FFFD, since Prometheus rejects a scrape that holds any. */
static void sbuf_escape(struct sbuf *b, const char *s, bool quote)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);

	while (*p) {
		size_t n = util_utf8_seq(p, (size_t)(end - p));

		if (n == 0) {
			sbuf_puts(b, "\xef\xbf\xbd");
			p++;
		} else if (*p == '\\') {
			sbuf_puts(b, "\\\\");
			p++;
		} else if (*p == '\n') {
			sbuf_puts(b, "\\n");
			p++;
		} else if (*p == '"' && quote) {
			sbuf_puts(b, "\\\"");
			p++;
		} else {
			sbuf_put(b, (const char *)p, n);
			p += n;
		}
	}
}

/* `{a="x",b="y",le="0.5"}`, or nothing for no labels and no le. */
static void put_labels(struct sbuf *b, const struct metric *s, const char *le)
{
	const struct metric_family *f = s->family;

	if (f->nlabels == 0 && !le)
		return;
	sbuf_puts(b, "{");
	for (size_t i = 0; i < f->nlabels; i++) {
		if (i > 0)
			sbuf_puts(b, ",");
		sbuf_puts(b, f->label_names[i]);
		sbuf_puts(b, "=\"");
		sbuf_escape(b, s->label_values[i], true);
		sbuf_puts(b, "\"");
	}
	if (le) {
		sbuf_puts(b, f->nlabels > 0 ? ",le=\"" : "le=\"");
		sbuf_puts(b, le);
		sbuf_puts(b, "\"");
	}
	sbuf_puts(b, "}");
}

static void put_sample(struct sbuf *b, const struct metric *s, const char *suffix, const char *le)
{
	sbuf_puts(b, s->family->name);
	sbuf_puts(b, suffix);
	put_labels(b, s, le);
	sbuf_puts(b, " ");
}

/* Buckets are read once each and summed as they are written, so _count always
 * equals the +Inf bucket even while other threads observe. */
static void render_histogram(struct sbuf *b, const struct metric *s)
{
	const struct metric_family *f = s->family;
	uint64_t cum = 0;

	for (size_t i = 0; i <= f->nbounds; i++) {
		cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
		put_sample(b, s, "_bucket", f->le[i]);
		sbuf_putu(b, cum);
		sbuf_puts(b, "\n");
	}
	put_sample(b, s, "_sum", NULL);
	sbuf_putd(b, bitsd(atomic_load_explicit(&s->bits, memory_order_relaxed)));
	sbuf_puts(b, "\n");
	put_sample(b, s, "_count", NULL);
	sbuf_putu(b, cum);
	sbuf_puts(b, "\n");
}

static const char *const type_names[] = {
	[METRIC_COUNTER] = "counter",
	[METRIC_GAUGE] = "gauge",
	[METRIC_HISTOGRAM] = "histogram",
};

static void render_family(struct sbuf *b, const struct metric_family *f)
{
	const struct metric *s;

	sbuf_puts(b, "# HELP ");
	sbuf_puts(b, f->name);
	sbuf_puts(b, " ");
	sbuf_escape(b, f->help, false);
	sbuf_puts(b, "\n# TYPE ");
	sbuf_puts(b, f->name);
	sbuf_puts(b, " ");
	sbuf_puts(b, type_names[f->type]);
	sbuf_puts(b, "\n");
	for (s = atomic_load_explicit(&f->head, memory_order_acquire); s;
	     s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		if (f->type == METRIC_HISTOGRAM) {
			render_histogram(b, s);
			continue;
		}
		put_sample(b, s, "", NULL);
		sbuf_putd(b, metric_value(s));
		sbuf_puts(b, "\n");
	}
}

char *metrics_render(struct metrics *m, size_t *len)
{
	struct sbuf b = { NULL, 0, 0, false };
	const struct metric_family *f;

	if (!m)
		return NULL;
	sbuf_reserve(&b, 0);
	if (!b.failed)
		b.p[0] = '\0';
	for (f = atomic_load_explicit(&m->head, memory_order_acquire); f;
	     f = atomic_load_explicit(&f->next, memory_order_acquire))
		render_family(&b, f);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	if (len)
		*len = b.len;
	return b.p;
}
