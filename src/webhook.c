/* webhook.c -- pattern matching, outcome classes and the Retry-After delay for deliveries. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "webhook.h"

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

long long webhook_retry_after_ms(long long seconds, long long max_ms)
{
	if (seconds == 0)
		return -1;
	if (max_ms < 0)
		max_ms = 0;
	if (seconds < 0)
		return 0;
	/* saturate before overflow: anything this large is clamped anyway */
	return seconds > max_ms / 1000 ? max_ms : seconds * 1000;
}
