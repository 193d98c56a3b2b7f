/* telemetry.c -- the daemon's metric families and their series. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "telemetry.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "metrics.h"

static const char *const outcome_labels[TM_NOUTCOMES] = { "ok", "retry", "dead_letter", "skipped" };

/* Handler time: a handler is quick and local to the database. */
static const double duration_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10 };
/* created_at to handler start: from a NOTIFY wake-up to hours of backlog. */
static const double lag_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,    2.5,
	                             5,     10,   30,    60,   300, 900,  3600, 21600 };
static const double batch_duration_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	                                        0.25,  0.5,    1,     2.5,  5,     10,   30 };
static const double batch_size_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static struct telemetry {
	struct metrics *m;
	size_t ntypes;            /* registry types + 1 ("unknown", the last) */
	struct metric **events;   /* ntypes * TM_NOUTCOMES */
	struct metric **duration; /* ntypes */
	struct metric *lag;
	struct metric *batch_duration;
	struct metric *batch_size;
	struct metric *pending;
	struct metric *oldest;
	struct metric *dead_letters;
	struct metric **connected; /* nworkers */
	int nworkers;
	struct metric *reconnects;
	struct metric_family *events_family;   /* pgeventd_events_total */
	struct metric_family *duration_family; /* pgeventd_event_duration_seconds */
	struct metric_family *sql_route;       /* pgeventd_sql_route */
	struct metric_family *deliveries;
	struct metric *delivery_duration;
	struct metric *deliveries_in_flight;
	struct metric *deliveries_pending;
	struct metric_family *subscription_disabled;
	struct metric *retention_events;     /* rows deleted from events */
	struct metric *retention_attempts;   /* rows deleted from delivery_attempts */
	struct metric *retention_deliveries; /* rows deleted from deliveries */
} T;

static struct metric_family *family(enum metric_type type, const char *name, const char *help,
                                    size_t nlabels, const char *const *labels, const double *bounds,
                                    size_t nbounds)
{
	return metrics_family(T.m, type, name, help, nlabels, labels, bounds, nbounds);
}

/* A series of a family without labels. */
static struct metric *single(struct metric_family *f)
{
	return f ? metrics_series(f, NULL) : NULL;
}

static bool init_events(const struct registry *reg)
{
	static const char *const type_outcome[] = { "event_type", "outcome" };
	static const char *const type_only[] = { "event_type" };
	struct metric_family *ev = family(
	    METRIC_COUNTER, "pgeventd_events_total",
	    "Events that reached an outcome (ok, retry, dead_letter, skipped), by event type.", 2,
	    type_outcome, NULL, 0);
	struct metric_family *dur = family(METRIC_HISTOGRAM, "pgeventd_event_duration_seconds",
	                                   "Time spent in the handler, by event type.", 1,
	                                   type_only, duration_bounds, NELEMS(duration_bounds));

	if (!ev || !dur)
		return false;
	T.events_family = ev;
	T.duration_family = dur;
	T.ntypes = reg->n + 2; /* + "relay", "unknown" */
	T.events = calloc(T.ntypes * TM_NOUTCOMES, sizeof(*T.events));
	T.duration = calloc(T.ntypes, sizeof(*T.duration));
	if (!T.events || !T.duration)
		return false;
	for (size_t i = 0; i < T.ntypes; i++) {
		const char *type = i < reg->n    ? reg->entries[i]->event_type
		                   : i == reg->n ? "relay"
		                                 : "unknown";

		for (int o = 0; o < TM_NOUTCOMES; o++) {
			const char *lv[2] = { type, outcome_labels[o] };

			T.events[i * TM_NOUTCOMES + (size_t)o] = metrics_series(ev, lv);
			if (!T.events[i * TM_NOUTCOMES + (size_t)o])
				return false;
		}
		T.duration[i] = metrics_series(dur, &type);
		if (!T.duration[i])
			return false;
	}
	return true;
}

static bool init_workers(int nworkers)
{
	static const char *const worker_label[] = { "worker" };
	struct metric_family *f = family(
	    METRIC_GAUGE, "pgeventd_db_connected",
	    "1 while the worker's database connections are up, else 0.", 1, worker_label, NULL, 0);

	if (!f)
		return false;
	T.connected = calloc((size_t)nworkers, sizeof(*T.connected));
	if (!T.connected)
		return false;
	T.nworkers = nworkers;
	for (int i = 0; i < nworkers; i++) {
		char name[32];
		const char *lv[1] = { name };

		snprintf(name, sizeof(name), "worker-%d", i + 1);
		T.connected[i] = metrics_series(f, lv);
		if (!T.connected[i])
			return false;
	}
	return true;
}

static bool init_process(const char *version)
{
	static const char *const version_label[] = { "version" };
	struct metric_family *up =
	    family(METRIC_GAUGE, "pgeventd_up", "1 while pgeventd runs.", 0, NULL, NULL, 0);
	struct metric_family *info =
	    family(METRIC_GAUGE, "pgeventd_build_info", "Build information; the value is 1.", 1,
	           version_label, NULL, 0);
	struct metric_family *start =
	    family(METRIC_GAUGE, "process_start_time_seconds",
	           "Start time of the process since the Unix epoch in seconds.", 0, NULL, NULL, 0);
	struct metric *s_up = single(up), *s_start = single(start), *s_info;
	const char *lv[1] = { version };

	if (!info || !s_up || !s_start)
		return false;
	s_info = metrics_series(info, lv);
	if (!s_info)
		return false;
	metric_set(s_up, 1);
	metric_set(s_info, 1);
	metric_set(s_start, (double)time(NULL));
	return true;
}

bool telemetry_init(const struct registry *reg, int nworkers, const char *version)
{
	T.m = metrics_new();
	if (!T.m)
		return false;
	if (!init_events(reg))
		goto fail;
	T.lag = single(family(METRIC_HISTOGRAM, "pgeventd_event_lag_seconds",
	                      "Time from when an event fell due (created_at, or next_attempt_at "
	                      "when retried or scheduled) to the start of its handler.",
	                      0, NULL, lag_bounds, NELEMS(lag_bounds)));
	T.batch_duration = single(family(METRIC_HISTOGRAM, "pgeventd_batch_duration_seconds",
	                                 "Time from claiming a batch to its commit.", 0, NULL,
	                                 batch_duration_bounds, NELEMS(batch_duration_bounds)));
	T.batch_size = single(family(METRIC_HISTOGRAM, "pgeventd_batch_size",
	                             "Events in each committed batch.", 0, NULL, batch_size_bounds,
	                             NELEMS(batch_size_bounds)));
	T.pending =
	    single(family(METRIC_GAUGE, "pgeventd_queue_pending",
	                  "Unprocessed events (sampled every few seconds).", 0, NULL, NULL, 0));
	T.oldest = single(
	    family(METRIC_GAUGE, "pgeventd_queue_oldest_pending_age_seconds",
	           "How long the oldest due unprocessed event has been due (sampled), 0 when none.",
	           0, NULL, NULL, 0));
	T.dead_letters = single(
	    family(METRIC_GAUGE, "pgeventd_dead_letters",
	           "Rows in event_dead_letters (sampled; exact up to 100000, then estimated).", 0,
	           NULL, NULL, 0));
	T.reconnects =
	    single(family(METRIC_COUNTER, "pgeventd_db_reconnects_total",
	                  "Database reconnections after a lost connection.", 0, NULL, NULL, 0));
	static const char *const route_labels[] = { "event_type", "function" };
	T.sql_route = family(METRIC_GAUGE, "pgeventd_sql_route",
	                     "1 for each event-type pattern routed to a SQL function (routes in "
	                     "the configuration), 0 once a reload removed it.",
	                     2, route_labels, NULL, 0);
	static const char *const sub_outcome[] = { "subscription", "outcome" };
	static const char *const sub_only[] = { "subscription" };
	T.deliveries = family(METRIC_COUNTER, "pgeventd_deliveries_total",
	                      "Webhook delivery attempts by subscription and outcome (delivered, "
	                      "retry, dead for a retry past max_attempts, failed, gone; stale or "
	                      "unrecorded when the result could not be applied).",
	                      2, sub_outcome, NULL, 0);
	T.delivery_duration = single(family(METRIC_HISTOGRAM, "pgeventd_delivery_duration_seconds",
	                                    "Time of each webhook request.", 0, NULL,
	                                    duration_bounds, NELEMS(duration_bounds)));
	T.deliveries_in_flight =
	    single(family(METRIC_GAUGE, "pgeventd_deliveries_in_flight",
	                  "Webhook requests in flight in this process.", 0, NULL, NULL, 0));
	T.deliveries_pending =
	    single(family(METRIC_GAUGE, "pgeventd_deliveries_pending",
	                  "Deliveries waiting to be sent (sampled).", 0, NULL, NULL, 0));
	T.subscription_disabled =
	    family(METRIC_GAUGE, "pgeventd_subscription_disabled",
	           "1 when the subscription is disabled (sampled).", 1, sub_only, NULL, 0);
	static const char *const table_label[] = { "table" };
	static const char *const t_events[] = { "events" },
	                         *const t_attempts[] = { "delivery_attempts" },
	                         *const t_deliveries[] = { "deliveries" };
	struct metric_family *retention =
	    family(METRIC_COUNTER, "pgeventd_retention_deleted_total",
	           "Rows deleted by retention (retention.*), by table.", 1, table_label, NULL, 0);
	T.retention_events = retention ? metrics_series(retention, t_events) : NULL;
	T.retention_attempts = retention ? metrics_series(retention, t_attempts) : NULL;
	T.retention_deliveries = retention ? metrics_series(retention, t_deliveries) : NULL;
	if (!T.retention_events || !T.retention_attempts || !T.retention_deliveries || !T.lag ||
	    !T.batch_duration || !T.batch_size || !T.pending || !T.oldest || !T.dead_letters ||
	    !T.reconnects || !T.deliveries || !T.delivery_duration || !T.deliveries_in_flight ||
	    !T.deliveries_pending || !T.subscription_disabled || !init_workers(nworkers) ||
	    !init_process(version))
		goto fail;
	return true;
fail:
	telemetry_free();
	return false;
}

void telemetry_free(void)
{
	metrics_free(T.m);
	free(T.events);
	free(T.duration);
	free(T.connected);
	T = (struct telemetry){ 0 };
}

void telemetry_event(int type_index, enum telemetry_outcome outcome, double duration_s,
                     double lag_s)
{
	size_t i;

	if (!T.m || outcome < 0 || outcome >= TM_NOUTCOMES)
		return;
	if (type_index >= 0 && (size_t)type_index < T.ntypes - 2)
		i = (size_t)type_index;
	else if (type_index == TELEMETRY_RELAY_ONLY)
		i = T.ntypes - 2;
	else
		i = T.ntypes - 1;
	metric_add(T.events[i * TM_NOUTCOMES + (size_t)outcome], 1);
	/* Only events whose handler ran have a duration and a lag. */
	if (duration_s >= 0) {
		metric_observe(T.duration[i], duration_s);
		metric_observe(T.lag, lag_s < 0 ? 0 : lag_s);
	}
}

void telemetry_route_event(const char *pattern, enum telemetry_outcome outcome, double duration_s,
                           double lag_s)
{
	const char *lv[2] = { pattern, NULL };

	if (!T.m || outcome < 0 || outcome >= TM_NOUTCOMES)
		return;
	lv[1] = outcome_labels[outcome];
	metric_add(metrics_series(T.events_family, lv), 1);
	if (duration_s >= 0) {
		metric_observe(metrics_series(T.duration_family, lv), duration_s);
		metric_observe(T.lag, lag_s < 0 ? 0 : lag_s);
	}
}

void telemetry_sql_route(const char *pattern, const char *function, bool active)
{
	const char *lv[2] = { pattern, function };

	if (T.m && T.sql_route)
		metric_set(metrics_series(T.sql_route, lv), active ? 1 : 0);
}

void telemetry_batch(int size, double duration_s)
{
	if (!T.m)
		return;
	metric_observe(T.batch_size, size);
	metric_observe(T.batch_duration, duration_s);
}

void telemetry_connected(int worker_id, bool connected)
{
	if (T.m && worker_id >= 1 && worker_id <= T.nworkers)
		metric_set(T.connected[worker_id - 1], connected ? 1 : 0);
}

void telemetry_retention(long long events, long long delivery_attempts, long long deliveries)
{
	if (!T.m)
		return;
	metric_add(T.retention_events, (double)events);
	metric_add(T.retention_attempts, (double)delivery_attempts);
	metric_add(T.retention_deliveries, (double)deliveries);
}

void telemetry_reconnect(void)
{
	if (T.m)
		metric_add(T.reconnects, 1);
}

void telemetry_queue(double pending, double oldest_age_s, double dead_letters)
{
	if (!T.m)
		return;
	metric_set(T.pending, pending);
	metric_set(T.oldest, oldest_age_s);
	metric_set(T.dead_letters, dead_letters);
}

char *telemetry_render(size_t *len)
{
	return T.m ? metrics_render(T.m, len) : NULL;
}

void telemetry_delivery(const char *subscription, const char *outcome, double duration_s)
{
	const char *lv[2] = { subscription, outcome };

	if (!T.m)
		return;
	metric_add(metrics_series(T.deliveries, lv), 1);
	metric_observe(T.delivery_duration, duration_s);
}

void telemetry_deliveries_in_flight(int n)
{
	if (T.m)
		metric_set(T.deliveries_in_flight, n);
}

void telemetry_deliveries_pending(double n)
{
	if (T.m)
		metric_set(T.deliveries_pending, n);
}

void telemetry_subscription_disabled(const char *subscription, bool disabled)
{
	const char *lv[1] = { subscription };

	if (T.m)
		metric_set(metrics_series(T.subscription_disabled, lv), disabled ? 1 : 0);
}
