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

#include "conf_int.h"

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
#include "src/routes.h"
#include "src/db.h"
#include "src/util.h"

static const char *const unknown_policy_names[] = { "dead_letter", "skip", NULL };

/* Every key pgeventd reads. Adding a key: a field in struct config, a row
 * here, a commented line in etc/pgeventd.conf and in pgeventd.conf(5). */
const struct cfg_key conf_keys[] = {
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
	{ "retention.deliveries_after", CFG_DURATION, OFF(retention.deliveries_after_ms), 0, 0, "",
	  0, 3153600000000.0, NULL, CFG_RELOAD,
	  "delete deliveries finished (delivered, failed, dead) longer ago than this, with their "
	  "attempt logs, e.g. \"30d\"; \"\" = keep them" },
	{ "retention.interval", CFG_DURATION, OFF(retention.interval_ms), 0, 0, "10m", 1000,
	  2678400000.0, NULL, CFG_RELOAD, "how often a retention pass runs" },
	{ "retention.batch_size", CFG_INT, OFF(retention.batch_size), 1000, 0, NULL, 1, 100000,
	  NULL, CFG_RELOAD,
	  "rows deleted per statement (each statement its own short transaction)" },
	{ "ordering.by_aggregate", CFG_STRLIST, OFF(ordering.by_aggregate), 0, 0, "", 0, 0, NULL, 0,
	  "event-type patterns handled one at a time per aggregate (aggregate_type + "
	  "aggregate_id), in (created_at, id) order" },
	{ "ordering.by_ordering_key", CFG_STRLIST, OFF(ordering.by_ordering_key), 0, 0, "", 0, 0,
	  NULL, 0,
	  "event-type patterns handled one at a time per value of the events.ordering_key "
	  "column, in (created_at, id) order" },
	{ "ordering.skip_dead_letters", CFG_STRLIST, OFF(ordering.skip_dead), 0, 0, "", 0, 0, NULL,
	  0,
	  "ordered event types whose dead-lettered head lets the rest of its key go on; "
	  "any other ordered type parks its key until the head is replayed or skipped" },
};

const size_t conf_nkeys = sizeof(conf_keys) / sizeof(conf_keys[0]);

void conf_strlist_release(struct strlist *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

bool conf_strlist_push(struct strlist *l, const char *s)
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

static void set_default(struct config *cfg, const struct cfg_key *k)
{
	void *p = conf_field(cfg, k);

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
		*(char **)p = util_strdup(k->sdef);
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
	for (size_t i = 0; i < conf_nkeys; i++)
		set_default(cfg, &conf_keys[i]);
}

void conf_release(struct config *cfg)
{
	free(cfg->path);
	cfg->path = NULL;
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct cfg_key *k = &conf_keys[i];
		void *p = conf_field(cfg, k);

		if (k->type == CFG_STRING) {
			free(*(char **)p);
			*(char **)p = NULL;
		} else if (k->type == CFG_STRLIST) {
			conf_strlist_release(p);
		}
	}
	routes_release(&cfg->routes);
}

static const struct cfg_key *find_key(const char *path)
{
	for (size_t i = 0; i < conf_nkeys; i++)
		if (strcmp(conf_keys[i].path, path) == 0)
			return &conf_keys[i];
	return NULL;
}

/* Whether `path` is a group some key lives under ("backoff", "log", ...). */
static bool is_group(const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < conf_nkeys; i++)
		if (strncmp(conf_keys[i].path, path, n) == 0 && conf_keys[i].path[n] == '.')
			return true;
	return false;
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
	const struct literal *lit = conf_find_literal(e->scan, path, elem);

	if (!lit) {
		*v = config_setting_get_int64(s);
		snprintf(written, len, "%lld", *v);
		return true;
	}
	if (lit->len < len)
		snprintf(written, len, "%.*s", (int)lit->len, lit->text);
	else
		snprintf(written, len, "%.*s...", (int)(len - 4), lit->text);
	return conf_literal_value(lit, v);
}

static bool read_key(struct config *cfg, const struct cfg_key *k, const config_setting_t *s,
                     struct load_err *e)
{
	void *p = conf_field(cfg, k);
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

			if (!conf_listen_address_ok(v, why, sizeof(why)))
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
		conf_strlist_release(l);
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
			if (!conf_strlist_push(l, config_setting_get_string(el)))
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
		if (!*prefix && strcmp(name, "routes") == 0) {
			if (!conf_routes_read(cfg, s, e->file, e->buf, e->len))
				return false;
		} else if (k) {
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
	return conf_routes_check(cfg, e->file, e->buf, e->len);
}

bool conf_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	config_t lc;
	struct scan sc = { 0 };
	struct load_err e = { path, err, errlen, &sc };
	char *text;
	bool ok = false;

	config_init(&lc);
	text = conf_read_file(path, err, errlen);
	if (!text)
		goto out;
	conf_scan_file(&sc, text);
	if (!config_read_string(&lc, text)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s:%d: cannot read an included file: %s", path,
			         config_error_line(&lc), config_error_text(&lc));
		else
			conf_syntax_error(&lc, &sc, path, err, errlen);
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
	conf_scan_release(&sc);
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
