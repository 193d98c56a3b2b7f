/*
 * conf.h -- pgeventd's configuration: one validated struct read from a
 * libconfig file, with every default in one table (conf.c, conf_keys).
 */
#ifndef PGEVENTD_CONF_H
#define PGEVENTD_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "backoff.h"
#include "log.h"

enum unknown_event_policy { UNKNOWN_DEAD_LETTER = 0, UNKNOWN_SKIP };

/* A list of strings; items and each item are owned by the list. */
struct strlist {
	char **items;
	int n;
};

/* A short list of integers (relay.backoff.schedule_ms). */
#define INTLIST_MAX 16
struct intlist {
	long long v[INTLIST_MAX];
	int n;
};

/* The webhook relay (relay.*). Off while event_types is empty. */
struct relay_config {
	struct strlist event_types; /* patterns of the event types handed to the relay */
	int concurrency;            /* requests in flight */
	int connect_timeout_ms;
	struct backoff_policy backoff;
	struct intlist
	    schedule_ms; /* explicit delays; when set, backoff's base/factor/cap are unused */
	int retry_after_max_ms; /* upper bound for an honoured Retry-After */
	int max_response_bytes; /* read at most this much of a response */
	char *ca_file;          /* NULL: the system's CA store; owned */
	bool block_private_networks;
	int disable_after_ms; /* disable a subscription failing this long; 0 = never */
	int breaker_failures; /* consecutive failures that pause a subscription; 0 = never */
	int breaker_cooldown_ms;
	int lease_margin_ms; /* lease = subscription timeout + connect timeout + this */
};

/* Ordered event types (ordering.*): patterns of the types whose events
 * run one at a time per key, in (created_at, id) order. Off while both
 * lists are empty. */
struct ordering_config {
	struct strlist by_aggregate;    /* keyed by aggregate_type + aggregate_id */
	struct strlist by_ordering_key; /* keyed by the ordering_key column */
	struct strlist skip_dead;       /* ordered types whose dead-lettered head is skipped */
};

/* Deleting what is no longer needed (retention.*); a 0 duration is off. */
struct retention_config {
	long long processed_after_ms;         /* processed events, by processed_at */
	long long delivery_attempts_after_ms; /* delivery_attempts, by started_at */
	long long deliveries_after_ms;        /* finished deliveries, by finished_at */
	long long interval_ms;                /* between passes */
	int batch_size;                       /* rows per DELETE */
};

/* SQL routes (routes = ( ... )), in the file's order; struct route is
 * in routes.h. Applied by SIGHUP once routes_resolve accepts them. */
struct route;
struct route_list {
	struct route *items; /* owned */
	int n;
};

struct config {
	char *path;     /* file it was read from, or NULL for defaults; owned */
	char *conninfo; /* database.conninfo; NULL = DATABASE_URL or PG* env; owned */
	int workers;
	int batch_size;         /* most events per claim */
	int handler_timeout_ms; /* statement/lock timeout of handlers, and their run's limit */
	int poll_interval_ms;
	bool listen;
	int max_attempts;
	struct backoff_policy backoff;
	int unknown_event_policy; /* enum unknown_event_policy */
	int shutdown_timeout_ms;
	int stall_timeout_ms; /* a claim loop without progress this long is stalled */
	int log_level;        /* enum log_level */
	int log_format;       /* enum log_format */
	struct strlist packs;
	char *health_listen; /* "host:port", "" disables; owned */
	struct relay_config relay;
	struct retention_config retention;
	struct route_list routes;
	struct ordering_config ordering;
};

/* Fill `cfg` with the defaults of config_keys. */
void conf_init(struct config *cfg);

/* Free what `cfg` holds (not `cfg` itself). */
void conf_release(struct config *cfg);

/*
 * Read `path` over the defaults. On error returns false with
 * "FILE:LINE: KEY: what is wrong" in `err` and leaves `cfg` with its
 * defaults released (call conf_release anyway; it is idempotent).
 */
bool conf_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* The connection string to use: the configured one, else $DATABASE_URL,
 * else "" (libpq then reads PGHOST, PGPORT, ... itself). */
const char *conf_conninfo(const struct config *cfg);

/* Walk the keys: for each, its path, current value rendered as text
 * (secrets as "***"), default, and whether SIGHUP applies it. */
typedef void (*conf_visit_fn)(void *arg, const char *key, const char *value, const char *def,
                              bool reloadable, const char *help);
void conf_visit(const struct config *cfg, conf_visit_fn fn, void *arg);

/* No pattern twice, and none that takes an event type a C handler of an
 * enabled pack routes (the message names both). conf_load runs it; a
 * reload runs it again once the running packs are kept. */
bool conf_routes_check(const struct config *cfg, const char *file, char *err, size_t errlen);

/*
 * After a SIGHUP: `next` is the file as read now, `cur` the configuration
 * running. Every key that differs is reported through `changed` (may be
 * NULL): with why = NULL when it applies now, else with the reason it does
 * not, and then it is set back to its running value in `next`, so that
 * `next` can replace `cur` whole. Returns false only when out of
 * memory (then `next` must be discarded).
 */
bool conf_keep_restart_keys(struct config *next, const struct config *cur,
                            void (*changed)(const char *key, const char *why));

/* A duration: one or more <number><unit> with units ms, s, m, h, d, w
 * ("30d", "1h30m", "500ms"); "" and "0" are 0. False on anything else. */
bool conf_parse_duration(const char *text, long long *ms);

/* `ms` in the largest unit up to days that divides it ("30d", "90m"; "" for 0). */
void conf_format_duration(long long ms, char *buf, size_t len);

#endif
