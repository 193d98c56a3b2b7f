/* check_webhook.c -- patterns, the body, outcome classes, Retry-After via libcurl, backoff. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "src/webhook.h"
#include "tests/check_unit.h"

/* Also declared in tests/check_unit.h once the runner lists this suite; harmless twice. */
Suite *webhook_suite(void);

struct match_case {
	const char *pattern, *type;
	bool match;
};

static void check_matches(const struct match_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(webhook_pattern_match(c[i].pattern, c[i].type) == c[i].match,
		              "\"%s\" vs \"%s\": expected %s", c[i].pattern, c[i].type,
		              c[i].match ? "a match" : "no match");
}

#define CHECK_MATCHES(c) check_matches(c, sizeof(c) / sizeof(c[0]))

/* ---- patterns ---------------------------------------------------------- */

START_TEST(test_pattern_without_star_is_exact)
{
	static const struct match_case c[] = {
		{ "job.created", "job.created", true },
		{ "job.created", "job.create", false },
		{ "job.created", "job.createdx", false },
		{ "job.created", "Job.created", false },
		{ "job.created", "", false },
	};

	CHECK_MATCHES(c);
}
END_TEST

START_TEST(test_pattern_trailing_star_is_a_prefix)
{
	static const struct match_case c[] = {
		{ "job.*", "job.created", true }, { "job.*", "job.a.b", true },
		{ "job.*", "job.", true },        { "job.*", "job", false },
		{ "job.*", "jobs.x", false },     { "job.*", "xjob.created", false },
		{ "job*", "jobs.x", true },
	};

	CHECK_MATCHES(c);
}
END_TEST

START_TEST(test_pattern_leading_star_is_a_suffix)
{
	static const struct match_case c[] = {
		{ "*.created", "job.created", true },    { "*.created", "a.b.created", true },
		{ "*.created", ".created", true },       { "*.created", "created", false },
		{ "*.created", "job.created.x", false }, { "*.created", "job.recreated", false },
	};

	CHECK_MATCHES(c);
}
END_TEST

START_TEST(test_pattern_middle_star_spans_dots)
{
	static const struct match_case c[] = {
		{ "a.*.c", "a.b.c", true },  { "a.*.c", "a.b.x.c", true },
		{ "a.*.c", "a..c", true },   { "a.*.c", "a.c", false },
		{ "a.*.c", "a.b.d", false }, { "a.*.c", "a.b.c.d", false },
		{ "a.*.c", "b.a.c", false },
	};

	CHECK_MATCHES(c);
}
END_TEST

START_TEST(test_pattern_several_stars_backtrack)
{
	static const struct match_case c[] = {
		{ "*.*", "a.b", true },
		{ "*.*", "ab", false },
		{ "**", "", true },
		{ "a*b*c", "abc", true },
		{ "a*b*c", "axxbyyc", true },
		{ "a*b*c", "acb", false },
		{ "*ab*ab", "xabyab", true },
		{ "*ab*ab", "xabyba", false },
		{ "a*a*a", "aaaa", true },
		{ "a*a*a", "aa", false },
		{ "*x*", "abc", false },
		{ "*.*.*", "a.b", false },
		{ "*a", "aaaaaaaaab", false },
		{ "*a", "baaaaaaaaa", true },
	};

	CHECK_MATCHES(c);
}
END_TEST

START_TEST(test_pattern_star_alone_and_empty)
{
	static const struct match_case c[] = {
		{ "*", "job.created", true }, { "*", "", true },
		{ "*", "*", true },           { "", "", true },
		{ "", "job", false },         { "job", "*", false },
	};

	CHECK_MATCHES(c);
	ck_assert(!webhook_pattern_match(NULL, "job"));
	ck_assert(!webhook_pattern_match("*", NULL));
}
END_TEST

/* ---- the body ------------------------------------------------------------ */

#define EID "3f1c2a9e-0000-4000-8000-000000000001"
#define AID "7d8e9f00-0000-4000-8000-000000000002"
#define TS  "2024-05-01T12:34:56.789012+00:00"

/* ---- outcomes ----------------------------------------------------------- */

START_TEST(test_classify_every_class)
{
	static const struct {
		bool curl_ok;
		long status;
		enum webhook_verdict v;
	} c[] = {
		{ true, 200, WEBHOOK_DELIVERED },
		{ true, 201, WEBHOOK_DELIVERED },
		{ true, 204, WEBHOOK_DELIVERED },
		{ true, 299, WEBHOOK_DELIVERED },
		{ false, 0, WEBHOOK_RETRY },
		{ false, 200, WEBHOOK_RETRY }, /* transport wins */
		{ true, 500, WEBHOOK_RETRY },
		{ true, 502, WEBHOOK_RETRY },
		{ true, 503, WEBHOOK_RETRY },
		{ true, 599, WEBHOOK_RETRY },
		{ true, 408, WEBHOOK_RETRY },
		{ true, 429, WEBHOOK_RETRY },
		{ true, 410, WEBHOOK_GONE },
		{ true, 400, WEBHOOK_FAIL },
		{ true, 401, WEBHOOK_FAIL },
		{ true, 403, WEBHOOK_FAIL },
		{ true, 404, WEBHOOK_FAIL },
		{ true, 409, WEBHOOK_FAIL },
		{ true, 411, WEBHOOK_FAIL },
		{ true, 422, WEBHOOK_FAIL },
		{ true, 499, WEBHOOK_FAIL },
		{ true, 300, WEBHOOK_FAIL },
		{ true, 301, WEBHOOK_FAIL },
		{ true, 302, WEBHOOK_FAIL },
		{ true, 307, WEBHOOK_FAIL },
		{ true, 308, WEBHOOK_FAIL },
		{ true, 0, WEBHOOK_RETRY },
		{ true, 100, WEBHOOK_RETRY },
		{ true, 199, WEBHOOK_RETRY },
		{ true, 600, WEBHOOK_RETRY },
		{ true, -1, WEBHOOK_RETRY },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		ck_assert_msg(webhook_classify(c[i].curl_ok, c[i].status) == c[i].v,
		              "curl_ok=%d status=%ld: got %s, want %s", c[i].curl_ok, c[i].status,
		              webhook_verdict_name(webhook_classify(c[i].curl_ok, c[i].status)),
		              webhook_verdict_name(c[i].v));
}
END_TEST

START_TEST(test_verdict_names)
{
	ck_assert_str_eq(webhook_verdict_name(WEBHOOK_DELIVERED), "delivered");
	ck_assert_str_eq(webhook_verdict_name(WEBHOOK_RETRY), "retry");
	ck_assert_str_eq(webhook_verdict_name(WEBHOOK_FAIL), "failed");
	ck_assert_str_eq(webhook_verdict_name(WEBHOOK_GONE), "gone");
}
END_TEST

/* ---- Retry-After -------------------------------------------------------- */

#define MAX 3600000LL

START_TEST(test_retry_after_seconds_become_ms)
{
	ck_assert_int_eq(webhook_retry_after_ms(120, MAX), 120000);
	ck_assert_int_eq(webhook_retry_after_ms(1, MAX), 1000);
}
END_TEST

START_TEST(test_retry_after_none_is_minus_one)
{
	/* libcurl's 0: no Retry-After, or one it could not read */
	ck_assert_int_eq(webhook_retry_after_ms(0, MAX), -1);
}
END_TEST

START_TEST(test_retry_after_past_date_is_zero)
{
	ck_assert_int_eq(webhook_retry_after_ms(-1, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms(-784111777, MAX), 0);
}
END_TEST

START_TEST(test_retry_after_is_clamped_to_max)
{
	ck_assert_int_eq(webhook_retry_after_ms(3601, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms(3600, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms(LLONG_MAX, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms(LLONG_MAX, LLONG_MAX), LLONG_MAX);
	ck_assert_int_eq(webhook_retry_after_ms(2, 1500), 1500);
	ck_assert_int_eq(webhook_retry_after_ms(10, 0), 0);
	ck_assert_int_eq(webhook_retry_after_ms(10, -5), 0);
}
END_TEST

/* What the relay makes of a 429 carrying `retry_after` (a format string
 * given a time_t for dates): libcurl reads the header from a loopback
 * answer, webhook_retry_after_ms() turns it into the delay. */
struct one_answer {
	int listener;
	char response[256];
};

static void *answer_once(void *arg)
{
	struct one_answer *a = arg;
	char buf[4096];
	int c = accept(a->listener, NULL, NULL);

	if (c >= 0) {
		(void)!read(c, buf, sizeof(buf)); /* the request: one small GET */
		(void)!write(c, a->response, strlen(a->response));
		close(c);
	}
	return NULL;
}

static long long delay_for_retry_after(const char *value)
{
	struct one_answer a;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	pthread_t th;
	char url[64];
	curl_off_t secs = -12345;
	CURL *e;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.listener = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(a.listener, 0);
	ck_assert_int_eq(bind(a.listener, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(a.listener, 1), 0);
	ck_assert_int_eq(getsockname(a.listener, (struct sockaddr *)&sin, &len), 0);
	snprintf(a.response, sizeof(a.response),
	         "HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\n"
	         "Content-Length: 0\r\nConnection: close\r\n\r\n",
	         value);
	ck_assert_int_eq(pthread_create(&th, NULL, answer_once, &a), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
	e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
	ck_assert_int_eq(curl_easy_perform(e), CURLE_OK);
	ck_assert_int_eq(curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &secs), CURLE_OK);
	curl_easy_cleanup(e);
	pthread_join(th, NULL);
	close(a.listener);
	return webhook_retry_after_ms((long long)secs, MAX);
}

enum http_date_form { IMF_FIXDATE, RFC850, ASCTIME };

static void http_date(char *buf, size_t len, enum http_date_form form, time_t t)
{
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	if (form == IMF_FIXDATE) {
		strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	} else if (form == RFC850) { /* its two-digit year by hand: -Wformat-y2k */
		n = strftime(buf, len, "%A, %d-%b-", &tm);
		snprintf(buf + n, len - n, "%02d %02d:%02d:%02d GMT", tm.tm_year % 100, tm.tm_hour,
		         tm.tm_min, tm.tm_sec);
	} else {
		strftime(buf, len, "%a %b %e %H:%M:%S %Y", &tm);
	}
}

START_TEST(test_retry_after_from_libcurl_delta_seconds)
{
	ck_assert_int_eq(delay_for_retry_after("120"), 120000);
	ck_assert_int_eq(delay_for_retry_after("7200"), MAX);
}
END_TEST

START_TEST(test_retry_after_from_libcurl_http_date_all_three_forms)
{
	static const enum http_date_form forms[] = { IMF_FIXDATE, RFC850, ASCTIME };
	char v[64];

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		long long ms;

		http_date(v, sizeof(v), forms[i], time(NULL) + 30);
		ms = delay_for_retry_after(v);
		ck_assert_msg(ms >= 28000 && ms <= 30000, "\"%s\" -> %lld", v, ms);
	}
	/* a date in the past never waits: libcurl before 8.12 reports it as a
	 * negative delay (0 ms), later ones as 0 (no hint, the backoff) */
	http_date(v, sizeof(v), IMF_FIXDATE, time(NULL) - 30);
	ck_assert_int_le(delay_for_retry_after(v), 0);
}
END_TEST

START_TEST(test_retry_after_from_libcurl_garbage_is_no_hint)
{
	ck_assert_int_eq(delay_for_retry_after("soon"), -1);
}
END_TEST

/* ---- backoff ------------------------------------------------------------ */

Suite *webhook_suite(void)
{
	Suite *s = suite_create("webhook");
	TCase *pat = tcase_create("patterns");
	TCase *outcome = tcase_create("outcome");
	TCase *retry = tcase_create("retry");

	tcase_add_test(pat, test_pattern_without_star_is_exact);
	tcase_add_test(pat, test_pattern_trailing_star_is_a_prefix);
	tcase_add_test(pat, test_pattern_leading_star_is_a_suffix);
	tcase_add_test(pat, test_pattern_middle_star_spans_dots);
	tcase_add_test(pat, test_pattern_several_stars_backtrack);
	tcase_add_test(pat, test_pattern_star_alone_and_empty);
	suite_add_tcase(s, pat);

	tcase_add_test(outcome, test_classify_every_class);
	tcase_add_test(outcome, test_verdict_names);
	suite_add_tcase(s, outcome);

	tcase_add_test(retry, test_retry_after_seconds_become_ms);
	tcase_add_test(retry, test_retry_after_none_is_minus_one);
	tcase_add_test(retry, test_retry_after_past_date_is_zero);
	tcase_add_test(retry, test_retry_after_is_clamped_to_max);
	tcase_add_test(retry, test_retry_after_from_libcurl_delta_seconds);
	tcase_add_test(retry, test_retry_after_from_libcurl_http_date_all_three_forms);
	tcase_add_test(retry, test_retry_after_from_libcurl_garbage_is_no_hint);
	suite_add_tcase(s, retry);
	return s;
}
