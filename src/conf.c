/*
 * conf.c -- read pgeventd.conf (libconfig syntax) into struct config.
 *
 * conf_keys[] is the single table of keys: type, bounds, default,
 * whether SIGHUP applies it. Unknown keys are errors (a typo must not
 * silently fall back to a default), and every error names the file, the
 * line and the key.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "src/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libconfig.h>
#include <libpq-fe.h>

#include "handlers/registry.h"
#include "src/db.h"

enum cfg_type {
	CFG_INT,   /* an int field */
	CFG_LLONG, /* an integer key read into a long long field (the backoffs) */
	CFG_BOOL,
	CFG_DOUBLE,
	CFG_STRING,
	CFG_ENUM,
	CFG_STRLIST,
	CFG_INTLIST,
	CFG_DURATION, /* "30d", "1h30m", "500ms" into long long ms; "" = 0 (off) */
};

enum cfg_flags {
	CFG_RELOAD = 1 << 0,   /* SIGHUP applies it at once */
	CFG_SECRET = 1 << 1,   /* never shown: rendered as "***" */
	CFG_CONNINFO = 1 << 2, /* shown with its password redacted */
};

static const char *const unknown_policy_names[] = { "dead_letter", "skip", NULL };
struct cfg_key {
	const char *path;
	enum cfg_type type;
	size_t offset;
	long long idef;           /* CFG_INT, CFG_BOOL, CFG_ENUM */
	double ddef;              /* CFG_DOUBLE */
	const char *sdef;         /* CFG_STRING (NULL allowed), CFG_STRLIST (comma-separated) */
	double min, max;          /* CFG_INT, CFG_DOUBLE */
	const char *const *names; /* CFG_ENUM */
	unsigned flags;
	const char *help;
};

#define OFF(field) offsetof(struct config, field)

/* Every key pgeventd reads. Adding a key: a field in struct config, a row
 * here, a commented line in etc/pgeventd.conf and in pgeventd.conf(5). */
static const struct cfg_key conf_keys[] = {
	{ "database.conninfo", CFG_STRING, OFF(conninfo), 0, 0, NULL, 0, 0, NULL, CFG_CONNINFO,
	  "libpq connection string or URI; unset: $DATABASE_URL, else PG* variables" },
	{ "workers", CFG_INT, OFF(workers), 2, 0, NULL, 1, 256, NULL, 0,
	  "claim-loop threads, each with its own connection" },
	{ "batch_size", CFG_INT, OFF(batch_size), 1000, 0, NULL, 1, 10000, NULL, CFG_RELOAD,
	  "most events one claim takes; claims start at 100 (or this, if smaller) and "
	  "double while the backlog keeps them full" },
	{ "handler_timeout_ms", CFG_INT, OFF(handler_timeout_ms), 15000, 0, NULL, 100, 3600000,
	  NULL, CFG_RELOAD,
	  "time limit of each statement and lock wait of a handler, and of a handler's run "
	  "(never more than half of stall_timeout_ms); over it the event is retried" },
	{ "poll_interval_ms", CFG_INT, OFF(poll_interval_ms), 1000, 0, NULL, 10, 86400000, NULL,
	  CFG_RELOAD, "claim at least this often (a fallback when listen is on)" },
	{ "listen", CFG_BOOL, OFF(listen), 1, 0, NULL, 0, 1, NULL, 0,
	  "wake on NOTIFY; false = poll only (PgBouncer transaction pooling)" },
	{ "max_attempts", CFG_INT, OFF(max_attempts), 5, 0, NULL, 1, 1000, NULL, CFG_RELOAD,
	  "attempts before an event is dead-lettered" },
	{ "backoff.base_ms", CFG_LLONG, OFF(backoff.base_ms), 1000, 0, NULL, 1, 86400000, NULL,
	  CFG_RELOAD, "delay after the first failed attempt" },
	{ "backoff.factor", CFG_DOUBLE, OFF(backoff.factor), 0, 2.0, NULL, 1.0, 100.0, NULL,
	  CFG_RELOAD, "growth of the delay per further attempt" },
	{ "backoff.cap_ms", CFG_LLONG, OFF(backoff.cap_ms), 3600000, 0, NULL, 1, 604800000, NULL,
	  CFG_RELOAD, "longest delay before jitter" },
	{ "backoff.jitter", CFG_DOUBLE, OFF(backoff.jitter), 0, 0.1, NULL, 0.0, 1.0, NULL,
	  CFG_RELOAD, "random spread of each delay, 0.1 = +-10 %" },
	{ "unknown_event_policy", CFG_ENUM, OFF(unknown_event_policy), UNKNOWN_DEAD_LETTER, 0, NULL,
	  0, 0, unknown_policy_names, CFG_RELOAD,
	  "event type with no handler: dead_letter or skip (mark processed)" },
	{ "stall_timeout_ms", CFG_INT, OFF(stall_timeout_ms), 60000, 0, NULL, 1000, 86400000, NULL,
	  CFG_RELOAD,
	  "a claim loop with no progress for this long (or 3 poll intervals, if longer) is "
	  "stalled: /health/live fails and the systemd watchdog is no longer fed" },
	{ "shutdown_timeout_ms", CFG_INT, OFF(shutdown_timeout_ms), 25000, 0, NULL, 0, 3600000,
	  NULL, CFG_RELOAD, "on SIGTERM, time to finish the batch in hand" },
	{ "log.level", CFG_ENUM, OFF(log_level), LOG_INFO, 0, NULL, 0, 0, log_level_names,
	  CFG_RELOAD, "debug, info, notice, warning or error" },
	{ "log.format", CFG_ENUM, OFF(log_format), LOG_FORMAT_LOGFMT, 0, NULL, 0, 0,
	  log_format_names, CFG_RELOAD, "logfmt or json (one object per line)" },
	{ "packs", CFG_STRLIST, OFF(packs), 0, 0, "", 0, 0, NULL, 0,
	  "handler packs to enable besides core, e.g. [\"buddy\"]" },
	{ "health.listen", CFG_STRING, OFF(health_listen), 0, 0, "127.0.0.1:8080", 0, 0, NULL, 0,
	  "address of the /health and /metrics server; \"\" disables it" },
	{ "relay.event_types", CFG_STRLIST, OFF(relay.event_types), 0, 0, "", 0, 0, NULL,
	  CFG_RELOAD,
	  "event-type patterns handed to the webhook relay, e.g. [\"job.*\"]; [] = relay off "
	  "(turning the relay on or off needs a restart)" },
	{ "relay.concurrency", CFG_INT, OFF(relay.concurrency), 64, 0, NULL, 1, 1024, NULL, 0,
	  "webhook requests in flight at once" },
	{ "relay.connect_timeout_ms", CFG_INT, OFF(relay.connect_timeout_ms), 5000, 0, NULL, 100,
	  600000, NULL, CFG_RELOAD, "time to connect to a subscriber" },
	{ "relay.backoff.base_ms", CFG_LLONG, OFF(relay.backoff.base_ms), 1000, 0, NULL, 1,
	  86400000, NULL, CFG_RELOAD, "delay after the first failed delivery attempt" },
	{ "relay.backoff.factor", CFG_DOUBLE, OFF(relay.backoff.factor), 0, 2.0, NULL, 1.0, 100.0,
	  NULL, CFG_RELOAD, "growth of the delay per further attempt" },
	{ "relay.backoff.cap_ms", CFG_LLONG, OFF(relay.backoff.cap_ms), 3600000, 0, NULL, 1,
	  604800000, NULL, CFG_RELOAD, "longest delay before jitter" },
	{ "relay.backoff.jitter", CFG_DOUBLE, OFF(relay.backoff.jitter), 0, 0.2, NULL, 0.0, 1.0,
	  NULL, CFG_RELOAD, "random spread of each delay, 0.2 = +-20 %" },
	{ "relay.backoff.schedule_ms", CFG_INTLIST, OFF(relay.schedule_ms), 0, 0, NULL, 1, 86400000,
	  NULL, CFG_RELOAD,
	  "explicit delays after failed attempts 1, 2, ...; the last repeats; [] = "
	  "base/factor/cap" },
	{ "relay.retry_after_max_ms", CFG_INT, OFF(relay.retry_after_max_ms), 3600000, 0, NULL, 0,
	  604800000, NULL, CFG_RELOAD, "longest Retry-After (429, 503) honoured" },
	{ "relay.max_response_bytes", CFG_INT, OFF(relay.max_response_bytes), 1048576, 0, NULL,
	  4096, 1073741824, NULL, CFG_RELOAD, "response bytes read before the transfer is cut" },
	{ "relay.ca_file", CFG_STRING, OFF(relay.ca_file), 0, 0, NULL, 0, 0, NULL, CFG_RELOAD,
	  "CA bundle for TLS verification; unset: the system's" },
	{ "relay.block_private_networks", CFG_BOOL, OFF(relay.block_private_networks), 0, 0, NULL,
	  0, 1, NULL, CFG_RELOAD, "refuse loopback, private, link-local and metadata addresses" },
	{ "relay.disable_after_ms", CFG_INT, OFF(relay.disable_after_ms), 432000000, 0, NULL, 0,
	  2000000000, NULL, CFG_RELOAD,
	  "disable a subscription whose every attempt failed this long" },
	{ "relay.breaker.failures", CFG_INT, OFF(relay.breaker_failures), 10, 0, NULL, 0, 100000,
	  NULL, CFG_RELOAD, "consecutive failures that pause a subscription; 0 = never" },
	{ "relay.breaker.cooldown_ms", CFG_INT, OFF(relay.breaker_cooldown_ms), 60000, 0, NULL, 0,
	  86400000, NULL, CFG_RELOAD, "pause of a subscription after breaker.failures" },
	{ "relay.lease_margin_ms", CFG_INT, OFF(relay.lease_margin_ms), 30000, 0, NULL, 100,
	  3600000, NULL, CFG_RELOAD,
	  "a delivery's lease outlives its request by this much before another may take it" },
	{ "retention.processed_after", CFG_DURATION, OFF(retention.processed_after_ms), 0, 0, "", 0,
	  3153600000000.0, NULL, CFG_RELOAD,
	  "delete processed events older than this, e.g. \"30d\" (not those with a dead letter); "
	  "\"\" = keep them" },
	{ "retention.delivery_attempts_after", CFG_DURATION,
	  OFF(retention.delivery_attempts_after_ms), 0, 0, "", 0, 3153600000000.0, NULL, CFG_RELOAD,
	  "delete webhook attempt logs older than this, e.g. \"14d\"; \"\" = keep them" },
	{ "retention.interval", CFG_DURATION, OFF(retention.interval_ms), 0, 0, "10m", 1000,
	  2678400000.0, NULL, CFG_RELOAD, "how often a retention pass runs" },
	{ "retention.batch_size", CFG_INT, OFF(retention.batch_size), 1000, 0, NULL, 1, 100000,
	  NULL, CFG_RELOAD,
	  "rows deleted per statement (each statement its own short transaction)" },
};

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static void *field(struct config *cfg, const struct cfg_key *k)
{
	return (char *)cfg + k->offset;
}

static const void *cfield(const struct config *cfg, const struct cfg_key *k)
{
	return (const char *)cfg + k->offset;
}

static void strlist_release(struct strlist *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static bool strlist_push(struct strlist *l, const char *s)
{
	char **items = realloc(l->items, sizeof(*items) * (size_t)(l->n + 1));
	char *dup = strdup(s);

	if (!items || !dup) {
		free(dup);
		if (items)
			l->items = items;
		return false;
	}
	l->items = items;
	l->items[l->n++] = dup;
	return true;
}

static char *xstrdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Units of a duration, largest first (conf_format_duration uses the order). */
static const struct {
	const char *name;
	long long ms;
} duration_units[] = {
	{ "w", 7LL * 24 * 3600 * 1000 },
	{ "d", 24LL * 3600 * 1000 },
	{ "h", 3600LL * 1000 },
	{ "m", 60LL * 1000 },
	{ "s", 1000 },
	{ "ms", 1 },
};
#define NUNITS (sizeof(duration_units) / sizeof(duration_units[0]))

bool conf_parse_duration(const char *text, long long *ms)
{
	const char *p = text;
	long long total = 0;

	if (!*p || strcmp(p, "0") == 0) {
		*ms = 0;
		return true;
	}
	while (*p) {
		char *end;
		long long n;
		size_t u;

		if (*p < '0' || *p > '9')
			return false;
		errno = 0;
		n = strtoll(p, &end, 10);
		if (errno || end == p)
			return false;
		p = end;
		/* "ms" before "m": match the longest unit name first. */
		size_t best = NUNITS, best_len = 0;
		for (u = 0; u < NUNITS; u++) {
			size_t len = strlen(duration_units[u].name);

			if (strncmp(p, duration_units[u].name, len) == 0 && len > best_len) {
				best = u;
				best_len = len;
			}
		}
		if (best == NUNITS)
			return false;
		if (n > (LLONG_MAX - total) / duration_units[best].ms)
			return false;
		total += n * duration_units[best].ms;
		p += best_len;
	}
	*ms = total;
	return true;
}

void conf_format_duration(long long ms, char *buf, size_t len)
{
	/* The largest unit that divides it, weeks aside ("14d" reads better
	 * than "2w"): what an operator would have written. */
	buf[0] = '\0';
	if (ms <= 0)
		return;
	for (size_t u = 1; u < NUNITS; u++) {
		if (ms % duration_units[u].ms == 0) {
			snprintf(buf, len, "%lld%s", ms / duration_units[u].ms,
			         duration_units[u].name);
			return;
		}
	}
}

static void set_default(struct config *cfg, const struct cfg_key *k)
{
	void *p = field(cfg, k);

	switch (k->type) {
	case CFG_DURATION:
		if (!conf_parse_duration(k->sdef, (long long *)p))
			*(long long *)p = 0; /* a bad default is caught by check_conf */
		break;
	case CFG_LLONG:
		*(long long *)p = k->idef;
		break;
	case CFG_INT:
		*(int *)p = (int)k->idef;
		break;
	case CFG_BOOL:
		*(bool *)p = k->idef != 0;
		break;
	case CFG_ENUM:
		*(int *)p = (int)k->idef;
		break;
	case CFG_DOUBLE:
		*(double *)p = k->ddef;
		break;
	case CFG_STRING:
		*(char **)p = xstrdup_or_null(k->sdef);
		break;
	case CFG_STRLIST:
		((struct strlist *)p)->items = NULL;
		((struct strlist *)p)->n = 0;
		break;
	case CFG_INTLIST:
		((struct intlist *)p)->n = 0;
		break;
	}
}

void conf_init(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NKEYS; i++)
		set_default(cfg, &conf_keys[i]);
}

void conf_release(struct config *cfg)
{
	free(cfg->path);
	cfg->path = NULL;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &conf_keys[i];
		void *p = field(cfg, k);

		if (k->type == CFG_STRING) {
			free(*(char **)p);
			*(char **)p = NULL;
		} else if (k->type == CFG_STRLIST) {
			strlist_release(p);
		}
	}
}

static const struct cfg_key *find_key(const char *path)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(conf_keys[i].path, path) == 0)
			return &conf_keys[i];
	return NULL;
}

/* Whether `path` is a group some key lives under ("backoff", "log", ...). */
static bool is_group(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < NKEYS; i++)
		if (strncmp(conf_keys[i].path, path, n) == 0 && conf_keys[i].path[n] == '.')
			return true;
	return false;
}

/* ---- the file as written ---------------------------------------------- */

/*
 * libconfig 1.5 reads an integer without an L suffix into an int and
 * wraps it (4294967297 becomes 1), so range checks on its value can be
 * fooled. scan_file() therefore walks the text itself, recording each
 * integer literal under the path of the key it belongs to, and the
 * brackets still open at the end of the file (for a syntax error there).
 * It is a lexer, not a parser (libconfig still decides what is valid).
 * Where it cannot follow the text (an @include, an unterminated comment)
 * it sets scan.lost: then no bracket hint is given, and a key whose
 * literal it did not record falls back to libconfig's value.
 */
struct literal {
	char path[128];   /* "relay.backoff.schedule_ms" */
	int elem;         /* -1: the key's value; else the index in its list */
	const char *text; /* into the file's text, not terminated */
	size_t len;
};

#define SCAN_DEPTH 32

struct scan_frame {
	char open;      /* '{', '[' or '(' */
	int line;       /* where it was opened */
	char path[128]; /* the group or list it opens; "" when not a key */
	int elem;       /* next element index of a list */
};

struct scan {
	struct literal *lits; /* owned */
	int n, cap;
	struct scan_frame stack[SCAN_DEPTH];
	int depth;
	bool lost; /* something the scan does not follow: no hints from it */
};

static bool is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* The path a value of `name` has at the current depth ("" inside a list). */
static void scan_child_path(const struct scan *sc, const char *name, char *out, size_t len)
{
	const struct scan_frame *top = sc->depth ? &sc->stack[sc->depth - 1] : NULL;

	if (top && top->open != '{')
		snprintf(out, len, "%s", ""); /* a group inside a list: not a key */
	else if (top && top->path[0])
		snprintf(out, len, "%s.%s", top->path, name);
	else if (top)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%s", name);
}

/* A scalar value: an integer one is recorded under its key or list. */
static void scan_value(struct scan *sc, const char *name, const char *text, size_t len,
                       bool integer)
{
	struct scan_frame *top = sc->depth ? &sc->stack[sc->depth - 1] : NULL;
	struct literal lit = { .elem = -1, .text = text, .len = len };

	if (top && top->open != '{') {
		lit.elem = top->elem++;
		snprintf(lit.path, sizeof(lit.path), "%s", top->path);
	} else if (name[0]) {
		scan_child_path(sc, name, lit.path, sizeof(lit.path));
	}
	if (!integer || !lit.path[0])
		return;
	if (sc->n == sc->cap) {
		int cap = sc->cap ? sc->cap * 2 : 32;
		struct literal *l = realloc(sc->lits, sizeof(*l) * (size_t)cap);

		if (!l) {
			sc->lost = true;
			return;
		}
		sc->lits = l;
		sc->cap = cap;
	}
	sc->lits[sc->n++] = lit;
}

/* Whether text[0..len) is written as an integer: [+-]digits or 0xhex, then L or LL. */
static bool looks_integer(const char *t, size_t len)
{
	size_t i = 0, digits = 0;
	bool hex = len > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X');

	if (hex)
		i = 2;
	else if (len && (t[0] == '+' || t[0] == '-'))
		i = 1;
	for (; i < len; i++, digits++)
		if (!(t[i] >= '0' && t[i] <= '9') &&
		    !(hex && ((t[i] >= 'a' && t[i] <= 'f') || (t[i] >= 'A' && t[i] <= 'F'))))
			break;
	if (i < len && t[i] == 'L')
		i++;
	if (i < len && t[i] == 'L')
		i++;
	return digits > 0 && i == len;
}

static void scan_file(struct scan *sc, const char *text)
{
	const char *p = text;
	char name[64] = "";
	int line = 1;

	while (*p) {
		char c = *p;

		if (c == '\n') {
			line++;
			p++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
			p++;
		} else if (c == '#' || (c == '/' && p[1] == '/') || c == '@') {
			/* a comment, or a directive such as @include: to the end of the line */
			if (c == '@')
				sc->lost = true; /* an included file's text is not scanned */
			while (*p && *p != '\n')
				p++;
		} else if (c == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");

			if (!end) {
				sc->lost = true;
				return;
			}
			for (; p < end; p++)
				line += *p == '\n';
			p = end + 2;
		} else if (c == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				line += *p == '\n';
			}
			if (!*p) {
				sc->lost = true;
				return;
			}
			p++;
			scan_value(sc, name, NULL, 0, false);
			name[0] = '\0';
		} else if (c == '=' || c == ':') {
			p++;
		} else if (c == ';' || c == ',') {
			name[0] = '\0';
			p++;
		} else if (c == '{' || c == '[' || c == '(') {
			struct scan_frame *f;

			if (sc->depth == SCAN_DEPTH) {
				sc->lost = true;
				return;
			}
			f = &sc->stack[sc->depth];
			f->open = c;
			f->line = line;
			f->elem = 0;
			if (sc->depth && sc->stack[sc->depth - 1].open != '{') {
				/* an element of a list: a group inside it is no key */
				sc->stack[sc->depth - 1].elem++;
				f->path[0] = '\0';
			} else {
				scan_child_path(sc, name, f->path, sizeof(f->path));
			}
			sc->depth++;
			name[0] = '\0';
			p++;
		} else if (c == '}' || c == ']' || c == ')') {
			char want = c == '}' ? '{' : c == ']' ? '[' : '(';

			if (!sc->depth || sc->stack[sc->depth - 1].open != want) {
				sc->lost = true;
				return;
			}
			sc->depth--;
			name[0] = '\0';
			p++;
		} else if (is_name_start(c) && !name[0]) {
			const char *start = p;

			while (is_name_char(*p))
				p++;
			/* true/false after "name =" are values, not names */
			if ((p - start == 4 && strncasecmp(start, "true", 4) == 0) ||
			    (p - start == 5 && strncasecmp(start, "false", 5) == 0))
				scan_value(sc, "", NULL, 0, false);
			else
				snprintf(name, sizeof(name), "%.*s", (int)(p - start), start);
		} else {
			/* a number, or a boolean after a name */
			const char *start = p;

			while (*p && (is_name_char(*p) || *p == '.' || *p == '+'))
				p++;
			if (p == start) {
				sc->lost = true; /* a character libconfig rejects */
				return;
			}
			scan_value(sc, name, start, (size_t)(p - start),
			           looks_integer(start, (size_t)(p - start)));
			name[0] = '\0';
		}
	}
}

static const struct literal *find_literal(const struct scan *sc, const char *path, int elem)
{
	if (!sc)
		return NULL;
	for (int i = 0; i < sc->n; i++)
		if (sc->lits[i].elem == elem && strcmp(sc->lits[i].path, path) == 0)
			return &sc->lits[i];
	return NULL;
}

/* The value of an integer literal as written; false when it does not fit in 64 bits. */
static bool literal_value(const struct literal *lit, long long *v)
{
	char buf[64], *end;
	size_t len = lit->len;

	while (len && lit->text[len - 1] == 'L')
		len--;
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, lit->text, len);
	buf[len] = '\0';
	errno = 0;
	if (len > 2 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) {
		unsigned long long u = strtoull(buf, &end, 16);

		if (errno || *end || u > (unsigned long long)LLONG_MAX)
			return false;
		*v = (long long)u;
		return true;
	}
	*v = strtoll(buf, &end, 10);
	return !errno && !*end;
}

struct load_err {
	const char *file;
	char *buf;
	size_t len;
	const struct scan *scan; /* the file's literals; NULL: libconfig's values only */
};

static bool fail(struct load_err *e, const config_setting_t *s, const char *key, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

static bool fail(struct load_err *e, const config_setting_t *s, const char *key, const char *fmt,
                 ...)
{
	va_list ap;
	int n = snprintf(e->buf, e->len, "%s:%d: %s: ", e->file,
	                 s ? config_setting_source_line(s) : 0, key);

	if (n < 0 || (size_t)n >= e->len)
		return false;
	va_start(ap, fmt);
	vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

/* Whether `host` is a host name by RFC 1123: dot-separated labels of
 * letters, digits and inner hyphens, and not all digits at the end (so a
 * mistyped IPv4 address such as 999.1.1.1 is not taken for a name). */
static bool is_host_name(const char *host)
{
	size_t total = strlen(host), label = 0;
	bool digits_only = true;

	if (total == 0 || total > 253)
		return false;
	for (const char *p = host;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return !digits_only;
			label = 0;
			digits_only = true;
			continue;
		}
		if (label == 0 && *p == '-')
			return false;
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
		if (*p < '0' || *p > '9')
			digits_only = false;
		label++;
	}
}

/*
 * health.listen as the health server reads it (httpd.c): "" (off),
 * ":port", "*:port", "host:port" or "[ipv6]:port" with a port from 0 (any
 * free one) to 65535, the host a literal IPv4 address or a host name, the
 * IPv6 address a literal with an optional %zone. Whether a name resolves
 * and the port is free is left to the bind. False with the reason in `why`.
 */
static bool listen_address_ok(const char *spec, char *why, size_t len)
{
	char host[256];
	const char *colon, *port;
	unsigned long v;

	if (!spec[0])
		return true;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':')
			goto form;
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			goto form;
		if (memchr(spec, ':', (size_t)(colon - spec))) {
			snprintf(why, len, "an IPv6 address goes in brackets, e.g. \"[::1]:8080\"");
			return false;
		}
	}
	port = colon + 1;
	if (!*port || strspn(port, "0123456789") != strlen(port))
		goto form;
	errno = 0;
	v = strtoul(port, NULL, 10);
	if (errno || v > 65535 || strlen(port) > 5) { /* httpd.c reads 5 digits at most */
		snprintf(why, len, "port %s is out of range (0 to 65535) in \"%s\"", port, spec);
		return false;
	}
	if ((size_t)(colon - spec) >= sizeof(host))
		goto host;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (spec[0] == '[') {
		struct in6_addr a6;
		char *zone;

		memmove(host, host + 1, strlen(host)); /* drop the brackets */
		host[strlen(host) - 1] = '\0';
		zone = strchr(host, '%');
		if (zone)
			*zone++ = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1 ||
		    (zone && (!*zone || strspn(zone, "abcdefghijklmnopqrstuvwxyz"
		                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		                            strlen(zone))))
			goto host;
		return true;
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		return true;
	if (strspn(host, "0123456789.") == strlen(host)) {
		struct in_addr a4;

		if (inet_pton(AF_INET, host, &a4) != 1)
			goto host;
		return true;
	}
	if (is_host_name(host))
		return true;
host:
	snprintf(why, len, "\"%.*s\" is not an IPv4 address, [IPv6 address] or host name",
	         (int)(colon - spec), spec);
	return false;
form:
	snprintf(why, len, "must be host:port, [ipv6]:port, :port or *:port, got \"%s\"", spec);
	return false;
}

/* What a setting is, for messages such as "must be true or false, got a string". */
static const char *type_name(int t)
{
	switch (t) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number with a fraction";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "something else";
}

/*
 * An integer setting's value as the file writes it, not as libconfig
 * narrowed it: `written` gets the text to quote. False when it does not
 * fit in 64 bits (then only `written` is set). Settings the scan did not
 * see (an @include) fall back to libconfig's value.
 */
static bool integer_value(const struct load_err *e, const config_setting_t *s, const char *path,
                          int elem, long long *v, char *written, size_t len)
{
	const struct literal *lit = find_literal(e->scan, path, elem);

	if (!lit) {
		*v = config_setting_get_int64(s);
		snprintf(written, len, "%lld", *v);
		return true;
	}
	if (lit->len < len)
		snprintf(written, len, "%.*s", (int)lit->len, lit->text);
	else
		snprintf(written, len, "%.*s...", (int)(len - 4), lit->text);
	return literal_value(lit, v);
}

static bool read_key(struct config *cfg, const struct cfg_key *k, const config_setting_t *s,
                     struct load_err *e)
{
	void *p = field(cfg, k);
	int t = config_setting_type(s);

	switch (k->type) {
	case CFG_INT:
	case CFG_LLONG: {
		long long v;
		char written[64];

		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return fail(e, s, k->path,
			            "must be an integer between %.0f and %.0f, got %s", k->min,
			            k->max, type_name(t));
		if (!integer_value(e, s, k->path, -1, &v, written, sizeof(written)) ||
		    v < (long long)k->min || v > (long long)k->max)
			return fail(e, s, k->path, "must be between %.0f and %.0f, got %s", k->min,
			            k->max, written);
		if (k->type == CFG_LLONG)
			*(long long *)p = v;
		else
			*(int *)p = (int)v;
		return true;
	}
	case CFG_BOOL:
		if (t != CONFIG_TYPE_BOOL)
			return fail(e, s, k->path, "must be true or false, got %s", type_name(t));
		*(bool *)p = config_setting_get_bool(s) != 0;
		return true;
	case CFG_DOUBLE: {
		double v;
		long long iv;
		char written[64];

		if (t == CONFIG_TYPE_FLOAT) {
			v = config_setting_get_float(s);
			snprintf(written, sizeof(written), "%g", v);
		} else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
			if (!integer_value(e, s, k->path, -1, &iv, written, sizeof(written)))
				return fail(e, s, k->path, "must be between %g and %g, got %s",
				            k->min, k->max, written);
			v = (double)iv;
		} else {
			return fail(e, s, k->path, "must be a number, got %s", type_name(t));
		}
		if (!(v >= k->min && v <= k->max))
			return fail(e, s, k->path, "must be between %g and %g, got %s", k->min,
			            k->max, written);
		*(double *)p = v;
		return true;
	}
	case CFG_STRING: {
		const char *v;

		if (t != CONFIG_TYPE_STRING)
			return fail(e, s, k->path, "must be a string");
		v = config_setting_get_string(s);
		if (k->offset == OFF(health_listen)) {
			char why[320];

			if (!listen_address_ok(v, why, sizeof(why)))
				return fail(e, s, k->path, "%s", why);
		}
		free(*(char **)p);
		*(char **)p = strdup(v);
		return *(char **)p != NULL || fail(e, s, k->path, "out of memory");
	}
	case CFG_ENUM: {
		const char *v;
		char allowed[256] = "";

		if (t != CONFIG_TYPE_STRING)
			return fail(e, s, k->path, "must be a string");
		v = config_setting_get_string(s);
		for (int i = 0; k->names[i]; i++) {
			if (strcmp(v, k->names[i]) == 0) {
				*(int *)p = i;
				return true;
			}
			snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed),
			         "%s%s", i ? ", " : "", k->names[i]);
		}
		return fail(e, s, k->path, "must be one of %s, got \"%s\"", allowed, v);
	}
	case CFG_DURATION: {
		const char *v;
		long long ms;

		if (t != CONFIG_TYPE_STRING)
			return fail(e, s, k->path,
			            "must be a duration string such as \"30d\", \"12h\" or "
			            "\"500ms\", got %s",
			            type_name(t));
		v = config_setting_get_string(s);
		if (!conf_parse_duration(v, &ms))
			return fail(
			    e, s, k->path,
			    "\"%s\" is not a duration: a number and a unit (ms, s, m, h, d, "
			    "w), e.g. \"30d\" or \"1h30m\"",
			    v);
		if (ms != 0 && (ms < (long long)k->min || (k->max > 0 && ms > (long long)k->max))) {
			char lo[32], hi[32];

			conf_format_duration((long long)k->min, lo, sizeof(lo));
			conf_format_duration((long long)k->max, hi, sizeof(hi));
			if (k->min <= 0)
				return fail(e, s, k->path, "must be at most %s, got \"%s\"", hi, v);
			return fail(e, s, k->path, "must be between %s and %s, got \"%s\"", lo, hi,
			            v);
		}
		if (ms == 0 && k->min > 0)
			return fail(e, s, k->path, "must not be empty or 0");
		*(long long *)p = ms;
		return true;
	}
	case CFG_INTLIST: {
		struct intlist *l = p;

		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return fail(e, s, k->path, "must be a list of integers, e.g. [1000, 2000]");
		if (config_setting_length(s) > INTLIST_MAX)
			return fail(e, s, k->path, "at most %d entries", INTLIST_MAX);
		l->n = 0;
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
			int et = config_setting_type(el);
			long long v;
			char written[64];

			if (et != CONFIG_TYPE_INT && et != CONFIG_TYPE_INT64)
				return fail(e, el, k->path, "element %d must be an integer", i + 1);
			if (!integer_value(e, el, k->path, i, &v, written, sizeof(written)) ||
			    v < (long long)k->min || v > (long long)k->max)
				return fail(e, el, k->path,
				            "element %d must be between %.0f and %.0f, got %s",
				            i + 1, k->min, k->max, written);
			l->v[l->n++] = v;
		}
		return true;
	}
	case CFG_STRLIST: {
		struct strlist *l = p;

		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return fail(e, s, k->path,
			            "must be a list of strings, e.g. [\"a\", \"b\"]");
		strlist_release(l);
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);

			if (config_setting_type(el) != CONFIG_TYPE_STRING)
				return fail(e, el, k->path, "element %d must be a string", i + 1);
			if (k->offset == OFF(packs) &&
			    !registry_linked_pack(config_setting_get_string(el))) {
				char names[256];

				return fail(e, el, k->path,
				            "unknown pack \"%s\" (this build has: %s)",
				            config_setting_get_string(el),
				            registry_linked_names(names, sizeof(names)));
			}
			if (!strlist_push(l, config_setting_get_string(el)))
				return fail(e, el, k->path, "out of memory");
		}
		return true;
	}
	}
	return fail(e, s, k->path, "unsupported type");
}

/* Walk a group: every setting must be a known key or a group holding keys. */
static bool read_group(struct config *cfg, const config_setting_t *g, const char *prefix,
                       struct load_err *e)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		char path[256];
		const struct cfg_key *k;

		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", name);
		k = find_key(path);
		if (k) {
			if (!read_key(cfg, k, s, e))
				return false;
		} else if (is_group(path)) {
			if (config_setting_type(s) != CONFIG_TYPE_GROUP)
				return fail(e, s, path, "must be a group { ... }");
			if (!read_group(cfg, s, path, e))
				return false;
		} else {
			return fail(e, s, path, "unknown key");
		}
	}
	return true;
}

/* Checks that span several keys. */
static bool validate(const struct config *cfg, struct load_err *e)
{
	if (cfg->backoff.cap_ms < cfg->backoff.base_ms)
		return fail(e, NULL, "backoff.cap_ms", "must not be below backoff.base_ms");
	if (cfg->relay.backoff.cap_ms < cfg->relay.backoff.base_ms)
		return fail(e, NULL, "relay.backoff.cap_ms",
		            "must not be below relay.backoff.base_ms");
	return true;
}

/* What a file that is not a regular one is, for the message. */
static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a regular file";
}

/* A configuration file larger than this is a mistake, not a configuration. */
#define CONF_MAX_BYTES (1 << 20)

/*
 * The whole file as a string (malloc'd), or NULL with "FILE: why" in err.
 * Only a regular file is read: it is stat'ed before it is opened, and
 * opened O_NONBLOCK then fstat'ed, so a FIFO or a device put in its place
 * is refused without blocking or reading from it.
 */
static char *read_conf_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *text = NULL;
	size_t n = 0;
	int fd = -1;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
		goto not_regular;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode))
		goto not_regular;
	text = malloc(CONF_MAX_BYTES + 1);
	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	for (;;) {
		ssize_t r = read(fd, text + n, CONF_MAX_BYTES + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot read the file: %s", path,
			         strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONF_MAX_BYTES) {
			snprintf(err, errlen, "%s: cannot read the file: larger than %d bytes",
			         path, CONF_MAX_BYTES);
			goto fail;
		}
	}
	if (memchr(text, '\0', n)) {
		snprintf(err, errlen, "%s: cannot read the file: it holds a NUL byte, not text",
		         path);
		goto fail;
	}
	text[n] = '\0';
	close(fd);
	return text;
not_regular:
	snprintf(err, errlen, "%s: cannot read the file: it is %s, not a regular file", path,
	         file_kind(st.st_mode));
fail:
	if (fd >= 0)
		close(fd);
	free(text);
	return NULL;
}

/* libconfig's parse error, said once, with where a bracket left open at
 * the end of the file was opened when the scan can tell. */
static void syntax_error(const config_t *lc, const struct scan *sc, const char *path, char *err,
                         size_t errlen)
{
	const char *what = config_error_text(lc);
	int n = snprintf(err, errlen, "%s:%d: %s", path, config_error_line(lc),
	                 what && *what ? what : "syntax error");

	if (n < 0 || (size_t)n >= errlen || sc->lost || sc->depth == 0)
		return;
	const struct scan_frame *f = &sc->stack[sc->depth - 1];

	snprintf(err + n, errlen - (size_t)n, ": unclosed '%c'%s%s%s opened at line %d", f->open,
	         f->path[0] ? " of \"" : "", f->path, f->path[0] ? "\"" : "", f->line);
}

bool conf_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	config_t lc;
	struct scan sc = { 0 };
	struct load_err e = { path, err, errlen, &sc };
	char *text;
	bool ok = false;

	config_init(&lc);
	text = read_conf_file(path, err, errlen);
	if (!text)
		goto out;
	scan_file(&sc, text);
	if (!config_read_string(&lc, text)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s:%d: cannot read an included file: %s", path,
			         config_error_line(&lc), config_error_text(&lc));
		else
			syntax_error(&lc, &sc, path, err, errlen);
		goto out;
	}
	if (!read_group(cfg, config_root_setting(&lc), "", &e))
		goto out;
	if (!validate(cfg, &e))
		goto out;
	free(cfg->path);
	cfg->path = strdup(path);
	ok = cfg->path != NULL;
	if (!ok)
		snprintf(err, errlen, "%s: out of memory", path);
out:
	config_destroy(&lc);
	free(sc.lits);
	free(text);
	return ok;
}

const char *conf_conninfo(const struct config *cfg)
{
	const char *url;

	if (cfg->conninfo)
		return cfg->conninfo;
	url = getenv("DATABASE_URL");
	return url ? url : "";
}

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
	const void *p = cfield(cfg, k);

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
	for (size_t i = 0; i < NKEYS; i++) {
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
	void *dst = field(to, k);
	const void *src = cfield(from, k);

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
			if (!strlist_push(&copy, l->items[i])) {
				strlist_release(&copy);
				return false;
			}
		strlist_release(dst);
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
	const void *pa = cfield(a, k), *pb = cfield(b, k);

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
	for (size_t i = 0; i < NKEYS; i++) {
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
