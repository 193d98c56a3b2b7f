/* check_webhook.c -- patterns, the delivery body, outcome classes, Retry-After, backoff. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

#define NOW ((time_t)784111777) /* Sun, 06 Nov 1994 08:49:37 GMT */
#define MAX 3600000LL

START_TEST(test_retry_after_delta_seconds)
{
	ck_assert_int_eq(webhook_retry_after_ms("120", NOW, MAX), 120000);
	ck_assert_int_eq(webhook_retry_after_ms("0", NOW, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms(" \t5 ", NOW, MAX), 5000);
	ck_assert_int_eq(webhook_retry_after_ms("007", NOW, MAX), 7000);
}
END_TEST

START_TEST(test_retry_after_http_date_all_three_forms)
{
	ck_assert_int_eq(webhook_retry_after_ms("Sun, 06 Nov 1994 08:50:07 GMT", NOW, MAX), 30000);
	ck_assert_int_eq(webhook_retry_after_ms("Sunday, 06-Nov-94 08:50:07 GMT", NOW, MAX), 30000);
	ck_assert_int_eq(webhook_retry_after_ms("Sun Nov  6 08:50:07 1994", NOW, MAX), 30000);
	ck_assert_int_eq(webhook_retry_after_ms("Sun Nov 06 08:50:07 1994", NOW, MAX), 30000);
	/* across a day, a month and a leap day */
	ck_assert_int_eq(webhook_retry_after_ms("Mon, 07 Nov 1994 08:49:37 GMT", NOW, 1LL << 40),
	                 86400000LL);
	ck_assert_int_eq(webhook_retry_after_ms("Thu, 29 Feb 1996 00:00:00 GMT", NOW, 1LL << 40),
	                 (825552000LL - NOW) * 1000);
	/* names are matched without regard to case; the weekday is not cross-checked */
	ck_assert_int_eq(webhook_retry_after_ms("sun, 06 NOV 1994 08:50:07 gmt", NOW, MAX), 30000);
	ck_assert_int_eq(webhook_retry_after_ms("Fri, 06 Nov 1994 08:50:07 GMT", NOW, MAX), 30000);
}
END_TEST

START_TEST(test_retry_after_past_date_is_zero)
{
	ck_assert_int_eq(webhook_retry_after_ms("Sun, 06 Nov 1994 08:49:36 GMT", NOW, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOW, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms("Thu, 01 Jan 1970 00:00:00 GMT", NOW, MAX), 0);
}
END_TEST

START_TEST(test_retry_after_rfc850_year_is_within_50_years)
{
	/* from 1994, "40" is 2040 (ahead by less than 50 years), "44" is 2044 (exactly 50),
	 * "45" and "50" are 1945 and 1950, "94" is 1994 */
	ck_assert_int_eq(webhook_retry_after_ms("Sunday, 01-Jan-40 00:00:00 GMT", NOW, 1LL << 50),
	                 (2208988800LL - NOW) * 1000);
	ck_assert_int_eq(webhook_retry_after_ms("Friday, 01-Jan-44 00:00:00 GMT", NOW, 1LL << 50),
	                 (2335219200LL - NOW) * 1000);
	ck_assert_int_eq(webhook_retry_after_ms("Monday, 01-Jan-45 00:00:00 GMT", NOW, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms("Sunday, 01-Jan-50 00:00:00 GMT", NOW, MAX), 0);
	ck_assert_int_eq(webhook_retry_after_ms("Sunday, 06-Nov-94 08:49:38 GMT", NOW, MAX), 1000);
}
END_TEST

START_TEST(test_retry_after_garbage_is_minus_one)
{
	static const char *const bad[] = {
		"",
		"   ",
		"soon",
		"-5",
		"+5",
		"1.5",
		"5s",
		"5 5",
		"0x10",
		"Sun, 06 Nov 1994 08:49:37 UTC",
		"Sun, 06 Nov 1994 08:49:37",
		"Sun, 6 Nov 1994 08:49:37 GMT",
		"Sun 06 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 94 08:49:37 GMT",
		"Sun, 06 Nox 1994 08:49:37 GMT",
		"Sun, 31 Nov 1994 08:49:37 GMT",
		"Wed, 29 Feb 1995 00:00:00 GMT",
		"Sun, 00 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:60:00 GMT",
		"Sun, 06 Nov 1994 08:49:61 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMTx",
		"Sun, 06-Nov-94 08:49:37 GMT",
		"Sunday, 06 Nov 1994 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994",
		"Sun Nov  6 08:49:37 94",
		"Sun, 06 Nov 1994 08:49:37 GMT, and then a tail past the 64-byte buffer",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(webhook_retry_after_ms(bad[i], NOW, MAX) == -1, "\"%s\" -> %lld",
		              bad[i], webhook_retry_after_ms(bad[i], NOW, MAX));
	ck_assert_int_eq(webhook_retry_after_ms(NULL, NOW, MAX), -1);
}
END_TEST

START_TEST(test_retry_after_is_clamped_to_max)
{
	ck_assert_int_eq(webhook_retry_after_ms("3601", NOW, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms("3600", NOW, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms("99999999999999999999999999999", NOW, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms("9223372036854775807", NOW, LLONG_MAX), LLONG_MAX);
	ck_assert_int_eq(webhook_retry_after_ms("Fri, 31 Dec 9999 23:59:59 GMT", NOW, MAX), MAX);
	ck_assert_int_eq(webhook_retry_after_ms("10", NOW, 0), 0);
	ck_assert_int_eq(webhook_retry_after_ms("10", NOW, -5), 0);
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

	tcase_add_test(retry, test_retry_after_delta_seconds);
	tcase_add_test(retry, test_retry_after_http_date_all_three_forms);
	tcase_add_test(retry, test_retry_after_past_date_is_zero);
	tcase_add_test(retry, test_retry_after_rfc850_year_is_within_50_years);
	tcase_add_test(retry, test_retry_after_garbage_is_minus_one);
	tcase_add_test(retry, test_retry_after_is_clamped_to_max);
	suite_add_tcase(s, retry);
	return s;
}
