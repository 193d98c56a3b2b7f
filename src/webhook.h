/*
 * webhook.h -- the pure parts of webhook delivery: which subscriptions an event type matches,
 * the body on the wire, what an HTTP outcome means, and when to try again.
 * No I/O, no clock, no globals: the relay calls these and tests pin them down.
 */
#ifndef PGEVENTD_WEBHOOK_H
#define PGEVENTD_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/*
 * Event-type patterns: '*' matches any run of characters, dots included ("job.*" matches
 * "job.done" and "job.a.b" but not "jobs.x" nor "job"); everything else matches itself,
 * case-sensitively. "" matches only "". Linear in practice, O(len(pattern) * len(type)) at worst.
 */
bool webhook_pattern_match(const char *pattern, const char *event_type);

enum webhook_verdict {
	WEBHOOK_DELIVERED, /* 2xx */
	WEBHOOK_RETRY,     /* transport error, 408, 429, 5xx: again after a backoff */
	WEBHOOK_FAIL,      /* 3xx (redirects are never followed), other 4xx: permanent */
	WEBHOOK_GONE,      /* 410: permanent, and the subscription is disabled */
};

/*
 * Classify a finished HTTP attempt; curl_ok=false is a transport error (timeout, refused, DNS,
 * TLS) and http_status is then ignored. A status no rule names (1xx as final, < 100, >= 600) is
 * retried: attempts are bounded by max_attempts, and an odd server is likelier broken for a while
 * than for good.
 */
enum webhook_verdict webhook_classify(bool curl_ok, long http_status);
const char *webhook_verdict_name(enum webhook_verdict v);

/*
 * A Retry-After header value (RFC 9110 10.2.3): delta-seconds, or an HTTP-date in IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") or asctime
 * ("Sun Nov  6 08:49:37 1994") form, relative to `now`. Returns milliseconds clamped to
 * [0, max_ms] (a date in the past is 0), or -1 when value is NULL, blank or unparseable.
 * Surrounding whitespace is allowed; the weekday name is checked for form, not consistency.
 */
long long webhook_retry_after_ms(const char *value, time_t now, long long max_ms);

#endif
