/* webhook.c -- pattern matching, outcome classes and Retry-After for deliveries. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "webhook.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- event-type patterns ---------------------------------------------- */

/*
 * Greedy glob with one backtrack point: on a mismatch, let the last '*' swallow one more
 * character. Enough for '*'-only patterns, since an earlier star never needs to give back what a
 * later star could take.
 */
bool webhook_pattern_match(const char *pattern, const char *event_type)
{
	const char *p = pattern, *t = event_type, *star = NULL, *resume = NULL;

	if (!pattern || !event_type)
		return false;
	while (*t) {
		if (*p == '*') {
			star = p++;
			resume = t;
		} else if (*p == *t) {
			p++;
			t++;
		} else if (star) {
			p = star + 1;
			t = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* ---- outcome of an attempt ---------------------------------------------- */

/* First matching row wins; a status no row names is retried (see webhook.h). */
static const struct {
	long lo, hi;
	enum webhook_verdict verdict;
} status_rules[] = {
	{ 200, 299, WEBHOOK_DELIVERED },
	{ 408, 408, WEBHOOK_RETRY }, /* Request Timeout */
	{ 429, 429, WEBHOOK_RETRY }, /* Too Many Requests */
	{ 410, 410, WEBHOOK_GONE },
	{ 300, 399, WEBHOOK_FAIL }, /* redirects are never followed */
	{ 400, 499, WEBHOOK_FAIL },
	{ 500, 599, WEBHOOK_RETRY },
};

static const char *const verdict_names[] = {
	[WEBHOOK_DELIVERED] = "delivered",
	[WEBHOOK_RETRY] = "retry",
	[WEBHOOK_FAIL] = "failed",
	[WEBHOOK_GONE] = "gone",
};

enum webhook_verdict webhook_classify(bool curl_ok, long http_status)
{
	if (!curl_ok)
		return WEBHOOK_RETRY;
	for (size_t i = 0; i < sizeof(status_rules) / sizeof(status_rules[0]); i++)
		if (http_status >= status_rules[i].lo && http_status <= status_rules[i].hi)
			return status_rules[i].verdict;
	return WEBHOOK_RETRY;
}

const char *webhook_verdict_name(enum webhook_verdict v)
{
	if ((size_t)v >= sizeof(verdict_names) / sizeof(verdict_names[0]))
		return "unknown";
	return verdict_names[v];
}

/* ---- Retry-After ----------------------------------------------------------- */

static const char *const month_names[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const day_names[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *const day_names_long[] = { "Monday", "Tuesday",  "Wednesday", "Thursday",
	                                      "Friday", "Saturday", "Sunday" };

/* Consume the literal s (case-insensitively) at *p. */
static bool lit(const char **p, const char *s)
{
	size_t n = strlen(s);

	if (strncasecmp(*p, s, n) != 0)
		return false;
	*p += n;
	return true;
}

/* Consume one of n names (case-insensitively); its index, or -1. */
static int name(const char **p, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (lit(p, names[i]))
			return i;
	return -1;
}

/* Consume exactly n digits. */
static bool digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

struct http_date {
	int year, mon, day, hour, min, sec; /* mon 0-11 */
};

static bool time_of_day(const char **p, struct http_date *d)
{
	return digits(p, 2, &d->hour) && lit(p, ":") && digits(p, 2, &d->min) && lit(p, ":") &&
	       digits(p, 2, &d->sec);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf_fixdate(const char *p, struct http_date *d)
{
	return name(&p, day_names, 7) >= 0 && lit(&p, ", ") && digits(&p, 2, &d->day) &&
	       lit(&p, " ") && (d->mon = name(&p, month_names, 12)) >= 0 && lit(&p, " ") &&
	       digits(&p, 4, &d->year) && lit(&p, " ") && time_of_day(&p, d) && lit(&p, " GMT") &&
	       *p == '\0';
}

/* "Sunday, 06-Nov-94 08:49:37 GMT"; the two-digit year is resolved by the caller. */
static bool parse_rfc850(const char *p, struct http_date *d)
{
	return name(&p, day_names_long, 7) >= 0 && lit(&p, ", ") && digits(&p, 2, &d->day) &&
	       lit(&p, "-") && (d->mon = name(&p, month_names, 12)) >= 0 && lit(&p, "-") &&
	       digits(&p, 2, &d->year) && lit(&p, " ") && time_of_day(&p, d) && lit(&p, " GMT") &&
	       *p == '\0';
}

/* "Sun Nov  6 08:49:37 1994" (the day is two digits or a space and one digit) */
static bool parse_asctime(const char *p, struct http_date *d)
{
	if (name(&p, day_names, 7) < 0 || !lit(&p, " ") ||
	    (d->mon = name(&p, month_names, 12)) < 0 || !lit(&p, " "))
		return false;
	if (*p == ' ') {
		p++;
		if (!digits(&p, 1, &d->day))
			return false;
	} else if (!digits(&p, 2, &d->day)) {
		return false;
	}
	return lit(&p, " ") && time_of_day(&p, d) && lit(&p, " ") && digits(&p, 4, &d->year) &&
	       *p == '\0';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long days_from_civil(long long y, int m, int d)
{
	long long era;
	long long yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_valid(const struct http_date *d)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int max = mdays[d->mon] + (d->mon == 1 && leap(d->year));

	/* sec 60: a leap second, as RFC 5322 allows */
	return d->day >= 1 && d->day <= max && d->hour <= 23 && d->min <= 59 && d->sec <= 60;
}

static long long clamp_ms(long long ms, long long max_ms)
{
	if (max_ms < 0)
		max_ms = 0;
	if (ms < 0)
		return 0;
	return ms > max_ms ? max_ms : ms;
}

long long webhook_retry_after_ms(const char *value, time_t now, long long max_ms)
{
	char buf[64];
	const char *s = value, *e;
	struct http_date d = { 0 };
	size_t len;
	long long t;

	if (!value)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	len = (size_t)(e - s);
	if (len == 0)
		return -1;
	if (strspn(s, "0123456789") >= len) {
		long long secs = 0;

		/* saturate well before overflow: anything this large is clamped anyway */
		for (const char *c = s; c < e; c++)
			if (secs < LLONG_MAX / 10000)
				secs = secs * 10 + (*c - '0');
		return clamp_ms(secs >= LLONG_MAX / 10000 ? LLONG_MAX : secs * 1000, max_ms);
	}
	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (parse_rfc850(buf, &d)) {
		/* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in the past
		 * century, so the year lands in (now - 50, now + 50] */
		struct tm tm;
		int year;

		gmtime_r(&now, &tm);
		year = tm.tm_year + 1900;
		d.year += year - year % 100;
		if (d.year > year + 50)
			d.year -= 100;
		else if (d.year <= year - 50)
			d.year += 100;
	} else if (!parse_imf_fixdate(buf, &d) && !parse_asctime(buf, &d)) {
		return -1;
	}
	if (!date_valid(&d))
		return -1;
	t = days_from_civil(d.year, d.mon + 1, d.day) * 86400 + d.hour * 3600 + d.min * 60 + d.sec;
	return clamp_ms((t - (long long)now) * 1000, max_ms);
}
