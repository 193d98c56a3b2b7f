/*
 * metrics.h -- a Prometheus metrics registry: counters, gauges and histograms
 * rendered in the text exposition format 0.0.4 for the /metrics endpoint.
 *
 * Lifecycle: families are declared at startup, series (one per set of label
 * values) are looked up or created at any time, values are updated from any
 * thread without a lock, and metrics_render() snapshots everything. Nothing is
 * ever removed before metrics_free(), so a struct metric pointer stays valid
 * for the registry's life and callers may cache it.
 *
 * Values are doubles kept as their IEEE-754 bit pattern in a 64-bit atomic:
 * set is a store, add is a compare-and-swap loop (lock-free; exact for integer
 * counts up to 2^53). Histogram buckets are 64-bit atomic counters.
 */
#ifndef PGEVENTD_METRICS_H
#define PGEVENTD_METRICS_H

#include <stddef.h>

struct metrics;       /* a registry; owns its families */
struct metric_family; /* one metric name with fixed label names; owns its series */
struct metric;        /* one series (one set of label values) */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* An empty registry, or NULL when out of memory. */
struct metrics *metrics_new(void);
/* Frees the registry, its families and series; no other call may run meanwhile. NULL is a no-op. */
void metrics_free(struct metrics *m);

/*
 * Declare a family; the registry copies every argument. label_names may be
 * NULL when nlabels == 0; bounds may be NULL when nbounds == 0.
 * Names follow the Prometheus rules: metric [a-zA-Z_:][a-zA-Z0-9_:]*, label
 * [a-zA-Z_][a-zA-Z0-9_]*, neither starting with "__", no label named twice.
 * A counter's name ends in "_total"; a histogram's does not end in "_bucket",
 * "_sum" or "_count" and has no label "le"; its bounds are finite and
 * strictly increasing (+Inf is implicit); other types take no bounds.
 * Returns NULL on any of those, on a name (or a histogram's _bucket/_sum/_count
 * name) already in the registry, on a NULL help, or when out of memory.
 * Meant for startup, but safe against concurrent calls and renders.
 */
struct metric_family *metrics_family(struct metrics *m, enum metric_type type, const char *name,
                                     const char *help, size_t nlabels,
                                     const char *const *label_names, const double *bounds,
                                     size_t nbounds);

/*
 * The series with these label values (the family's nlabels strings, in the
 * order of its label names; NULL when nlabels == 0), created at zero on first
 * use. The same values always give the same pointer. Thread-safe: lookups take
 * no lock, creation takes the family's mutex. Returns NULL when out of memory
 * or when a label value is NULL.
 */
struct metric *metrics_series(struct metric_family *f, const char *const *label_values);

/*
 * The hot path: lock-free, safe from any thread. A call that does not fit the
 * series does nothing rather than corrupt it: s == NULL (a series that could
 * not be created), metric_add on a histogram, a negative
 * or NaN metric_add on a counter (counters only go up), metric_set on anything
 * but a plain gauge, metric_observe on anything but a histogram.
 */
void metric_add(struct metric *s, double v);     /* counters (v >= 0) and gauges */
void metric_set(struct metric *s, double v);     /* gauges */
void metric_observe(struct metric *s, double v); /* histograms; v <= bound counts in that bucket */

/* A counter's or gauge's value (a callback gauge calls its fn); a histogram's
 * observation count; 0 for NULL. */
double metric_value(const struct metric *s);

/*
 * The whole registry in the text exposition format 0.0.4: "# HELP" and
 * "# TYPE" once per family, families and series in creation order, histograms
 * as cumulative _bucket{...,le="..."} lines ending with le="+Inf", then _sum
 * and _count. Help text and label values are escaped and invalid UTF-8 is
 * replaced by U+FFFD. Numbers: integers up to 2^53 in plain digits, others as
 * the first of %.15g, %.16g, %.17g that reads back to the same double (so 0.1
 * stays "0.1"), and +Inf, -Inf, NaN.
 * A family without series renders only its HELP and TYPE lines.
 * Returns a malloc'd NUL-terminated buffer (caller frees) and stores its length
 * in *len (when len is not NULL), or NULL when out of memory.
 * Safe while other threads update, look up and create series.
 */
char *metrics_render(struct metrics *m, size_t *len);

#endif
