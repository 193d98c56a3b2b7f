/*
 * telemetry.h -- the daemon's Prometheus metrics. The names and labels are
 * a contract with dashboards and alert rules (README, "Metrics").
 *
 * telemetry_init() creates every series up front: event_type label values
 * are the registry's types plus "unknown", so the number of series is fixed
 * whatever producers insert. The update calls are lock-free and safe from
 * any thread; before init (or after a failed init) they do nothing.
 */
#ifndef PGEVENTD_TELEMETRY_H
#define PGEVENTD_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>

#include "handlers/registry.h"

enum telemetry_outcome { TM_OK, TM_RETRY, TM_DEAD_LETTER, TM_SKIPPED, TM_NOUTCOMES };

/* type_index of an event type with no handler of its own that only the
 * relay takes (labelled event_type="relay"). */
#define TELEMETRY_RELAY_ONLY (-2)

bool telemetry_init(const struct registry *reg, int nworkers, const char *version);
void telemetry_free(void);

/* One event outcome, counted when its batch committed. `type_index` is
 * the event type's registry index, or -1 for a type with no handler. */
void telemetry_event(int type_index, enum telemetry_outcome outcome, double duration_s,
                     double lag_s);
/* An event a SQL route took, labelled event_type=<the route's pattern that
 * matched it> (the series appear as routes are used; their number is
 * bounded by the patterns in the configuration). */
void telemetry_route_event(const char *pattern, enum telemetry_outcome outcome, double duration_s,
                           double lag_s);
/* pgeventd_sql_route{event_type=pattern, function} = 1 while the route is
 * in force, 0 after a reload removed it: what marks a label as a SQL route. */
void telemetry_sql_route(const char *pattern, const char *function, bool active);
void telemetry_batch(int size, double duration_s);
void telemetry_connected(int worker_id, bool connected);
void telemetry_reconnect(void);
/* Rows a retention pass deleted (the attempt logs deleted with their
 * deliveries count under deliveries only). */
void telemetry_retention(long long events, long long delivery_attempts, long long deliveries);
void telemetry_queue(double pending, double oldest_age_s, double dead_letters);

/* Webhook deliveries. Subscription label values are the names operators
 * gave their subscriptions. outcome: delivered, retry, failed, gone, or
 * stale/unrecorded when the result could not be applied. */
void telemetry_delivery(const char *subscription, const char *outcome, double duration_s);
void telemetry_deliveries_in_flight(int n);
void telemetry_deliveries_pending(double n);
void telemetry_subscription_disabled(const char *subscription, bool disabled);

/* The exposition text (malloc'd), or NULL without init or memory. */
char *telemetry_render(size_t *len);

#endif
