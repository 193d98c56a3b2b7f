/*
 * webhook.h -- the pure parts of webhook delivery: which subscriptions an event type matches,
 * the body on the wire, what an HTTP outcome means, and when to try again.
 * No I/O, no clock, no globals: the relay calls these and tests pin them down.
 */
#ifndef PGEVENTD_WEBHOOK_H
#define PGEVENTD_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

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
 * The delay a Retry-After asks for, from libcurl's reading of the header
 * (CURLINFO_RETRY_AFTER: delta-seconds, or an HTTP-date less now): 0 is no
 * header, or one it could not parse, and gives -1 (no hint: the backoff
 * policy decides); a negative number is a date in the past and gives 0;
 * else milliseconds, clamped to [0, max_ms].
 */
long long webhook_retry_after_ms(long long seconds, long long max_ms);

#endif
