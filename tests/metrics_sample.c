/* metrics_sample.c -- prints a registry shaped like pgeventd's /metrics, tricky
 * label values included, for tests/check_metrics_promtool.sh to lint. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>

#include "src/metrics.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0-dev"
#endif

#define L(...) ((const char *const[]){ __VA_ARGS__ })
#define N(a)   (sizeof(a) / sizeof((a)[0]))

/* Event types as a careless producer might write them: every character the
 * exposition format escapes, UTF-8, invalid UTF-8 and the empty string. */
static const char *const event_types[] = {
	"order.created", "say \"hi\"", "C:\\path\\", "two\nlines", "caf\xc3\xa9 \xe2\x98\x95",
	"bad \xff byte", "",
};
static const char *const outcomes[] = { "ok", "retry", "dead_letter", "skipped" };

static void *need(void *p, const char *what)
{
	if (!p) {
		fprintf(stderr, "metrics_sample: cannot create %s\n", what);
		exit(EXIT_FAILURE);
	}
	return p;
}

int main(void)
{
	static const double duration_bounds[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
		                                  0.25,  0.5,   1,    2.5,   5,    10 };
	static const double batch_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500 };
	struct metrics *m = need(metrics_new(), "registry");
	struct metric_family *events, *duration, *batch, *queue, *build, *start;
	double queue_pending = 42;
	size_t len;
	char *out;
	int ok;

	events = need(metrics_family(m, METRIC_COUNTER, "pgeventd_events_total",
	                             "Events that reached an outcome, by type and outcome.", 2,
	                             L("event_type", "outcome"), NULL, 0),
	              "pgeventd_events_total");
	duration = need(metrics_family(m, METRIC_HISTOGRAM, "pgeventd_event_duration_seconds",
	                               "Time spent in the handler, \"wall clock\" \\ per event.\n"
	                               "Second line.",
	                               1, L("event_type"), duration_bounds, N(duration_bounds)),
	                "pgeventd_event_duration_seconds");
	batch = need(metrics_family(m, METRIC_HISTOGRAM, "pgeventd_batch_size",
	                            "Events claimed per batch.", 0, NULL, batch_bounds,
	                            N(batch_bounds)),
	             "pgeventd_batch_size");
	queue = need(metrics_family(m, METRIC_GAUGE, "pgeventd_queue_pending",
	                            "Unprocessed events at the last look.", 0, NULL, NULL, 0),
	             "pgeventd_queue_pending");
	build =
	    need(metrics_family(m, METRIC_GAUGE, "pgeventd_build_info",
	                        "Always 1; the version is in the label.", 1, L("version"), NULL, 0),
	         "pgeventd_build_info");
	start = need(metrics_family(m, METRIC_GAUGE, "process_start_time_seconds",
	                            "Start time of the process since the Unix epoch in seconds.", 0,
	                            NULL, NULL, 0),
	             "process_start_time_seconds");

	for (size_t i = 0; i < N(event_types); i++) {
		struct metric *d = need(metrics_series(duration, L(event_types[i])), "duration");

		for (size_t j = 0; j < N(outcomes); j++)
			metric_add(
			    need(metrics_series(events, L(event_types[i], outcomes[j])), "events"),
			    (double)(i * 7 + j));
		for (int k = 0; k < 20; k++)
			metric_observe(d, 0.0005 * (double)((k * k + (int)i) % 40000));
	}
	for (int k = 0; k < 50; k++)
		metric_observe(need(metrics_series(batch, NULL), "batch"), (double)(k * 13 % 600));
	metric_set(need(metrics_series(queue, NULL), "queue"), queue_pending);
	metric_set(need(metrics_series(build, L(PACKAGE_VERSION)), "build_info"), 1);
	metric_set(need(metrics_series(start, NULL), "start"), 1700000000.25);

	out = need(metrics_render(m, &len), "render");
	ok = fwrite(out, 1, len, stdout) == len && fflush(stdout) == 0;
	free(out);
	metrics_free(m);
	return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
