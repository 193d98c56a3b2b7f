/* check_metrics.c -- the metrics registry: exposition text, name rules, thread safety. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/metrics.h"
#include "tests/check_unit.h"

/* A label name or value list, as the API takes it. */
#define L(...) ((const char *const[]){ __VA_ARGS__ })

/* The registry's text; the length it reports must match. Caller frees. */
static char *render(struct metrics *m)
{
	size_t len = (size_t)-1;
	char *out = metrics_render(m, &len);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, strlen(out));
	return out;
}

static void assert_renders(struct metrics *m, const char *want)
{
	char *out = render(m);

	ck_assert_str_eq(out, want);
	free(out);
}

START_TEST(test_metrics_counter_with_labels_renders_each_series)
{
	struct metrics *m = metrics_new();
	struct metric_family *f =
	    metrics_family(m, METRIC_COUNTER, "pgeventd_events_total", "Events by outcome.", 2,
	                   L("event_type", "outcome"), NULL, 0);
	struct metric *ok = metrics_series(f, L("order.created", "ok"));
	struct metric *retry = metrics_series(f, L("order.created", "retry"));

	ck_assert_ptr_nonnull(ok);
	ck_assert_ptr_nonnull(retry);
	metric_add(ok, 1);
	metric_add(ok, 2);
	metric_add(retry, 1);
	ck_assert_double_eq(metric_value(ok), 3);
	assert_renders(m,
	               "# HELP pgeventd_events_total Events by outcome.\n"
	               "# TYPE pgeventd_events_total counter\n"
	               "pgeventd_events_total{event_type=\"order.created\",outcome=\"ok\"} 3\n"
	               "pgeventd_events_total{event_type=\"order.created\",outcome=\"retry\"} 1\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_gauge_renders_set_and_add)
{
	struct metrics *m = metrics_new();
	struct metric_family *f = metrics_family(m, METRIC_GAUGE, "pgeventd_queue_pending",
	                                         "Events waiting.", 0, NULL, NULL, 0);
	struct metric *g = metrics_series(f, NULL);

	metric_set(g, 10);
	metric_add(g, -2.5);
	ck_assert_double_eq(metric_value(g), 7.5);
	assert_renders(m, "# HELP pgeventd_queue_pending Events waiting.\n"
	                  "# TYPE pgeventd_queue_pending gauge\n"
	                  "pgeventd_queue_pending 7.5\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_histogram_buckets_are_inclusive_and_cumulative)
{
	struct metrics *m = metrics_new();
	const double bounds[] = { 0.5, 1, 2.5 };
	struct metric_family *f =
	    metrics_family(m, METRIC_HISTOGRAM, "pgeventd_event_duration_seconds", "Handler time.",
	                   1, L("event_type"), bounds, 3);
	struct metric *a = metrics_series(f, L("a"));
	struct metric *b = metrics_series(f, L("b"));

	ck_assert_ptr_nonnull(a);
	/* 0.5 and 1 sit exactly on bounds and count in those buckets */
	metric_observe(a, 0.25);
	metric_observe(a, 0.5);
	metric_observe(a, 1);
	metric_observe(a, 2);
	metric_observe(a, 3);
	metric_observe(a, 10);
	ck_assert_double_eq(metric_value(a), 6);
	assert_renders(m, "# HELP pgeventd_event_duration_seconds Handler time.\n"
	                  "# TYPE pgeventd_event_duration_seconds histogram\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"a\",le=\"0.5\"} 2\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"a\",le=\"1\"} 3\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"a\",le=\"2.5\"} 4\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"a\",le=\"+Inf\"} 6\n"
	                  "pgeventd_event_duration_seconds_sum{event_type=\"a\"} 16.75\n"
	                  "pgeventd_event_duration_seconds_count{event_type=\"a\"} 6\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"b\",le=\"0.5\"} 0\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"b\",le=\"1\"} 0\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"b\",le=\"2.5\"} 0\n"
	                  "pgeventd_event_duration_seconds_bucket{event_type=\"b\",le=\"+Inf\"} 0\n"
	                  "pgeventd_event_duration_seconds_sum{event_type=\"b\"} 0\n"
	                  "pgeventd_event_duration_seconds_count{event_type=\"b\"} 0\n");
	ck_assert_double_eq(metric_value(b), 0);
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_histogram_without_labels_has_only_le)
{
	struct metrics *m = metrics_new();
	const double bounds[] = { 0.005, 100 };
	struct metric_family *f = metrics_family(m, METRIC_HISTOGRAM, "pgeventd_batch_size",
	                                         "Events per batch.", 0, NULL, bounds, 2);
	struct metric_family *bare =
	    metrics_family(m, METRIC_HISTOGRAM, "bare", "Only +Inf.", 0, NULL, NULL, 0);
	struct metric *s = metrics_series(f, NULL);

	metric_observe(s, 0.005);
	metric_observe(s, 100.5);
	metric_observe(s, NAN); /* lands in +Inf, as in the Go client */
	metric_observe(metrics_series(bare, NULL), -1);
	assert_renders(m, "# HELP pgeventd_batch_size Events per batch.\n"
	                  "# TYPE pgeventd_batch_size histogram\n"
	                  "pgeventd_batch_size_bucket{le=\"0.005\"} 1\n"
	                  "pgeventd_batch_size_bucket{le=\"100\"} 1\n"
	                  "pgeventd_batch_size_bucket{le=\"+Inf\"} 3\n"
	                  "pgeventd_batch_size_sum NaN\n"
	                  "pgeventd_batch_size_count 3\n"
	                  "# HELP bare Only +Inf.\n"
	                  "# TYPE bare histogram\n"
	                  "bare_bucket{le=\"+Inf\"} 1\n"
	                  "bare_sum -1\n"
	                  "bare_count 1\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_help_and_label_values_are_escaped)
{
	struct metrics *m = metrics_new();
	struct metric_family *f =
	    metrics_family(m, METRIC_GAUGE, "esc", "Line one\nback\\slash \"quoted\" caf\xc3\xa9",
	                   2, L("v", "w"), NULL, 0);

	metric_set(
	    metrics_series(f, L("say \"hi\" C:\\dir\nnext", "caf\xc3\xa9 \xe2\x98\x95\ttab")), 1);
	/* invalid UTF-8 (a stray byte, a truncated sequence, an overlong '/',
	 * a surrogate) cannot reach Prometheus: each bad byte becomes U+FFFD */
	metric_set(metrics_series(f, L("\xff", "x\xe2\x98 \xc0\xaf \xed\xa0\x80")), 2);
	metric_set(metrics_series(f, L("", "\xf0\x9f\x98\x80")), 3);
	assert_renders(
	    m, "# HELP esc Line one\\nback\\\\slash \"quoted\" caf\xc3\xa9\n"
	       "# TYPE esc gauge\n"
	       "esc{v=\"say \\\"hi\\\" C:\\\\dir\\nnext\",w=\"caf\xc3\xa9 \xe2\x98\x95\ttab\"} 1\n"
	       "esc{v=\"\xef\xbf\xbd\",w=\"x\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
	       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"} 2\n"
	       "esc{v=\"\",w=\"\xf0\x9f\x98\x80\"} 3\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_numbers_are_exact_and_spelled_for_prometheus)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{ 0, "0" },
		{ -0.0, "0" },
		{ 42, "42" },
		{ -7, "-7" },
		{ 1700000000, "1700000000" },
		{ 9007199254740992.0, "9007199254740992" }, /* 2^53: still plain digits */
		{ 1e20, "1e+20" },
		{ 0.1, "0.1" },
		{ 0.1 + 0.2, "0.30000000000000004" },
		{ 1.0 / 3, "0.3333333333333333" },
		{ 1700000000.25, "1700000000.25" },
		{ 1e-9, "1e-09" },
		{ -2.5e-300, "-2.5e-300" },
		{ 5e-324, "4.94065645841247e-324" },
		{ INFINITY, "+Inf" },
		{ -INFINITY, "-Inf" },
		{ NAN, "NaN" },
	};
	char want[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct metrics *m = metrics_new();
		struct metric_family *f =
		    metrics_family(m, METRIC_GAUGE, "n", "n", 0, NULL, NULL, 0);
		char *out;

		metric_set(metrics_series(f, NULL), cases[i].v);
		out = render(m);
		snprintf(want, sizeof(want), "# HELP n n\n# TYPE n gauge\nn %s\n", cases[i].text);
		ck_assert_str_eq(out, want);
		if (!isnan(cases[i].v))
			ck_assert_double_eq(strtod(cases[i].text, NULL), cases[i].v);
		free(out);
		metrics_free(m);
	}
}
END_TEST

START_TEST(test_metrics_render_in_creation_order)
{
	struct metrics *m = metrics_new();
	struct metric_family *z = metrics_family(m, METRIC_GAUGE, "zeta", "z", 1, L("k"), NULL, 0);
	struct metric_family *a = metrics_family(m, METRIC_GAUGE, "alpha", "a", 0, NULL, NULL, 0);
	struct metric_family *e = metrics_family(m, METRIC_GAUGE, "empty", "e", 0, NULL, NULL, 0);

	ck_assert_ptr_nonnull(e);
	metric_set(metrics_series(z, L("b")), 1);
	metric_set(metrics_series(z, L("a")), 2);
	metric_set(metrics_series(a, NULL), 3);
	assert_renders(m, "# HELP zeta z\n# TYPE zeta gauge\nzeta{k=\"b\"} 1\nzeta{k=\"a\"} 2\n"
	                  "# HELP alpha a\n# TYPE alpha gauge\nalpha 3\n"
	                  "# HELP empty e\n# TYPE empty gauge\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_empty_registry_renders_nothing)
{
	struct metrics *m = metrics_new();

	assert_renders(m, "");
	metrics_free(m);
	metrics_free(NULL);
}
END_TEST

START_TEST(test_metrics_series_same_labels_same_pointer)
{
	struct metrics *m = metrics_new();
	struct metric_family *f =
	    metrics_family(m, METRIC_COUNTER, "x_total", "x", 2, L("a", "b"), NULL, 0);
	char a[] = "one", b[] = "two";
	struct metric *s = metrics_series(f, L("one", "two"));

	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_eq(metrics_series(f, L(a, b)), s); /* equal strings, other storage */
	ck_assert_ptr_ne(metrics_series(f, L("two", "one")), s);
	ck_assert_ptr_ne(metrics_series(f, L("on", "etwo")), s);
	ck_assert_ptr_ne(metrics_series(f, L("one", "")), s);
	ck_assert_ptr_null(metrics_series(f, L("one", NULL)));
	ck_assert_ptr_null(metrics_series(f, NULL));
	ck_assert_ptr_null(metrics_series(NULL, NULL));
	metrics_free(m);
}
END_TEST

/* metrics_family with these arguments is refused. */
#define ASSERT_REFUSED(...) ck_assert_ptr_null(metrics_family(m, __VA_ARGS__))

START_TEST(test_metrics_bad_names_are_rejected)
{
	struct metrics *m = metrics_new();
	static const char *const bad_metric[] = { "",    "1abc",        "a-b", "a b",
		                                  "__x", "caf\xc3\xa9", "a.b" };
	static const char *const bad_label[] = { "", "1a", "a:b", "__name__", "a-b", "\xc3\xa9" };
	const double one_one[] = { 1, 1 }, down[] = { 2, 1 }, nan[] = { NAN }, inf[] = { INFINITY };

	for (size_t i = 0; i < sizeof(bad_metric) / sizeof(bad_metric[0]); i++)
		ASSERT_REFUSED(METRIC_GAUGE, bad_metric[i], "h", 0, NULL, NULL, 0);
	for (size_t i = 0; i < sizeof(bad_label) / sizeof(bad_label[0]); i++)
		ASSERT_REFUSED(METRIC_GAUGE, "g", "h", 1, &bad_label[i], NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, NULL, "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, "g", NULL, 0, NULL, NULL, 0);
	ASSERT_REFUSED((enum metric_type)42, "g", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, "g", "h", 2, L("a", "a"), NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, "g", "h", 1, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_COUNTER, "pgeventd_events", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_COUNTER, "pgeventd_total_events", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h_bucket", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h_sum", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h_count", "h", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 1, L("le"), NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 0, NULL, one_one, 2);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 0, NULL, down, 2);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 0, NULL, nan, 1);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 0, NULL, inf, 1);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "h", "h", 0, NULL, NULL, 3);
	ASSERT_REFUSED(METRIC_GAUGE, "g", "h", 0, NULL, one_one, 1);

	/* the same rules accept these */
	ck_assert_ptr_nonnull(metrics_family(m, METRIC_GAUGE, "g", "", 1, L("le"), NULL, 0));
	ck_assert_ptr_nonnull(
	    metrics_family(m, METRIC_COUNTER, ":a:b_total", "", 0, NULL, NULL, 0));
	ck_assert_ptr_nonnull(
	    metrics_family(m, METRIC_GAUGE, "_x9", "", 2, L("_a", "B9"), NULL, 0));
	ck_assert_ptr_nonnull(metrics_family(m, METRIC_HISTOGRAM, "h", "", 0, NULL, NULL, 0));
	ck_assert_ptr_nonnull(metrics_family(m, METRIC_GAUGE, "g_sum", "", 0, NULL, NULL, 0));

	/* names taken: twice the same, or one a histogram's sample names */
	ASSERT_REFUSED(METRIC_COUNTER, ":a:b_total", "", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, "g", "", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_GAUGE, "h_count", "", 0, NULL, NULL, 0);
	ASSERT_REFUSED(METRIC_HISTOGRAM, "g", "", 0, NULL, NULL, 0);
	ck_assert_ptr_nonnull(metrics_family(m, METRIC_GAUGE, "h_countx", "", 0, NULL, NULL, 0));
	metrics_free(m);
}
END_TEST

START_TEST(test_metrics_misuse_changes_nothing)
{
	struct metrics *m = metrics_new();
	struct metric *c = metrics_series(
	    metrics_family(m, METRIC_COUNTER, "c_total", "c", 0, NULL, NULL, 0), NULL);
	struct metric *g =
	    metrics_series(metrics_family(m, METRIC_GAUGE, "g", "g", 0, NULL, NULL, 0), NULL);
	const double bounds[] = { 1 };
	struct metric *h =
	    metrics_series(metrics_family(m, METRIC_HISTOGRAM, "h", "h", 0, NULL, bounds, 1), NULL);

	metric_add(c, 2);
	metric_add(c, -1); /* counters only go up */
	metric_add(c, NAN);
	metric_set(c, 100);
	metric_observe(c, 1);
	metric_observe(g, 1);
	metric_add(h, 1);
	metric_set(h, 1);
	metric_add(NULL, 1);
	metric_set(NULL, 1);
	metric_observe(NULL, 1);
	ck_assert_double_eq(metric_value(c), 2);
	ck_assert_double_eq(metric_value(g), 0);
	ck_assert_double_eq(metric_value(h), 0);
	ck_assert_double_eq(metric_value(NULL), 0);
	assert_renders(m, "# HELP c_total c\n# TYPE c_total counter\nc_total 2\n"
	                  "# HELP g g\n# TYPE g gauge\ng 0\n"
	                  "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n"
	                  "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	metrics_free(m);
}
END_TEST

/* ---- threads ---------------------------------------------------------------- */

#define NTHREADS 4
#define NOPS     100000

struct hammer {
	struct metric_family *counter, *gauge, *histogram;
	struct metric *got[3]; /* the series this thread looked up */
	pthread_barrier_t *start;
};

/* Each thread looks the series up itself (the first lookups race to create
 * them), then adds and observes values whose sums are exact in binary. */
static void *hammer(void *arg)
{
	struct hammer *h = arg;
	struct metric *c, *g, *hist;

	pthread_barrier_wait(h->start);
	c = metrics_series(h->counter, L("shared", "ok"));
	g = metrics_series(h->gauge, NULL);
	hist = metrics_series(h->histogram, L("shared"));
	for (int i = 0; i < NOPS; i++) {
		metric_add(c, 1);
		metric_add(g, 0.5);
		metric_observe(hist, (i % 4) * 0.25); /* 0, 0.25, 0.5, 0.75 */
	}
	h->got[0] = c;
	h->got[1] = g;
	h->got[2] = hist;
	return NULL;
}

struct renderer {
	struct metrics *m;
	atomic_bool stop;
	int renders;
};

/* Renders while the others write: every snapshot must be whole. */
static void *render_loop(void *arg)
{
	struct renderer *r = arg;

	while (!atomic_load(&r->stop)) {
		char *out = metrics_render(r->m, NULL);

		if (!out)
			return r;
		free(out);
		r->renders++;
	}
	return NULL;
}

START_TEST(test_metrics_threads_totals_are_exact)
{
	struct metrics *m = metrics_new();
	const double bounds[] = { 0.25, 0.5 };
	struct hammer h[NTHREADS];
	struct renderer r = { .m = m };
	pthread_t tid[NTHREADS], rtid;
	pthread_barrier_t start;
	void *rret;

	pthread_barrier_init(&start, NULL, NTHREADS);
	atomic_init(&r.stop, false);
	h[0].counter = metrics_family(m, METRIC_COUNTER, "ops_total", "o", 2,
	                              L("event_type", "outcome"), NULL, 0);
	h[0].gauge = metrics_family(m, METRIC_GAUGE, "level", "l", 0, NULL, NULL, 0);
	h[0].histogram =
	    metrics_family(m, METRIC_HISTOGRAM, "lat_seconds", "l", 1, L("event_type"), bounds, 2);
	h[0].start = &start;
	for (int i = 1; i < NTHREADS; i++)
		h[i] = h[0];
	pthread_create(&rtid, NULL, render_loop, &r);
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&tid[i], NULL, hammer, &h[i]);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(tid[i], NULL);
	atomic_store(&r.stop, true);
	pthread_join(rtid, &rret);
	pthread_barrier_destroy(&start);
	ck_assert_msg(rret == NULL, "a render failed");

	for (int i = 1; i < NTHREADS; i++)
		for (int k = 0; k < 3; k++)
			ck_assert_ptr_eq(h[i].got[k], h[0].got[k]);
	ck_assert_double_eq(metric_value(h[0].got[0]), NTHREADS * NOPS);
	ck_assert_double_eq(metric_value(h[0].got[1]), NTHREADS * NOPS * 0.5);
	ck_assert_double_eq(metric_value(h[0].got[2]), NTHREADS * NOPS);
	assert_renders(m, "# HELP ops_total o\n# TYPE ops_total counter\n"
	                  "ops_total{event_type=\"shared\",outcome=\"ok\"} 400000\n"
	                  "# HELP level l\n# TYPE level gauge\nlevel 200000\n"
	                  "# HELP lat_seconds l\n# TYPE lat_seconds histogram\n"
	                  "lat_seconds_bucket{event_type=\"shared\",le=\"0.25\"} 200000\n"
	                  "lat_seconds_bucket{event_type=\"shared\",le=\"0.5\"} 300000\n"
	                  "lat_seconds_bucket{event_type=\"shared\",le=\"+Inf\"} 400000\n"
	                  "lat_seconds_sum{event_type=\"shared\"} 150000\n"
	                  "lat_seconds_count{event_type=\"shared\"} 400000\n");
	metrics_free(m);
}
END_TEST

#define NLABELS 200

struct creator {
	struct metric_family *f;
	struct metric *got[NLABELS];
	pthread_barrier_t *start;
	int offset;
};

/* Every thread asks for the same NLABELS new series, each from its own
 * starting point so that creations collide. */
static void *create_many(void *arg)
{
	struct creator *c = arg;
	char value[16];

	pthread_barrier_wait(c->start);
	for (int k = 0; k < NLABELS; k++) {
		int i = (k + c->offset) % NLABELS;

		snprintf(value, sizeof(value), "v%d", i);
		c->got[i] = metrics_series(c->f, L(value));
		metric_add(c->got[i], 1);
	}
	return NULL;
}

START_TEST(test_metrics_concurrent_creation_makes_one_series_per_labels)
{
	struct metrics *m = metrics_new();
	struct metric_family *f =
	    metrics_family(m, METRIC_COUNTER, "made_total", "m", 1, L("k"), NULL, 0);
	struct creator c[NTHREADS];
	pthread_t tid[NTHREADS];
	pthread_barrier_t start;
	char *out, *p;
	int lines = 0;

	pthread_barrier_init(&start, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		c[i] =
		    (struct creator){ .f = f, .start = &start, .offset = i * NLABELS / NTHREADS };
		pthread_create(&tid[i], NULL, create_many, &c[i]);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < NLABELS; i++) {
		ck_assert_ptr_nonnull(c[0].got[i]);
		for (int t = 1; t < NTHREADS; t++)
			ck_assert_ptr_eq(c[t].got[i], c[0].got[i]);
		ck_assert_double_eq(metric_value(c[0].got[i]), NTHREADS);
	}
	out = render(m);
	for (p = out; (p = strstr(p, "\nmade_total{")); p++)
		lines++;
	ck_assert_int_eq(lines, NLABELS);
	free(out);
	metrics_free(m);
}
END_TEST

Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("exposition");
	TCase *tt = tcase_create("threads");

	tcase_add_test(tc, test_metrics_counter_with_labels_renders_each_series);
	tcase_add_test(tc, test_metrics_gauge_renders_set_and_add);
	tcase_add_test(tc, test_metrics_histogram_buckets_are_inclusive_and_cumulative);
	tcase_add_test(tc, test_metrics_histogram_without_labels_has_only_le);
	tcase_add_test(tc, test_metrics_help_and_label_values_are_escaped);
	tcase_add_test(tc, test_metrics_numbers_are_exact_and_spelled_for_prometheus);
	tcase_add_test(tc, test_metrics_render_in_creation_order);
	tcase_add_test(tc, test_metrics_empty_registry_renders_nothing);
	tcase_add_test(tc, test_metrics_series_same_labels_same_pointer);
	tcase_add_test(tc, test_metrics_bad_names_are_rejected);
	tcase_add_test(tc, test_metrics_misuse_changes_nothing);
	suite_add_tcase(s, tc);
	/* generous: sanitizers and valgrind slow the 400000 atomic updates down */
	tcase_set_timeout(tt, 120);
	tcase_add_test(tt, test_metrics_threads_totals_are_exact);
	tcase_add_test(tt, test_metrics_concurrent_creation_makes_one_series_per_labels);
	suite_add_tcase(s, tt);
	return s;
}
