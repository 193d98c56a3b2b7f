/* redact.c -- URLs with their passwords hidden, for every place one is shown. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "redact.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define REDACTED "***"

/*
 * The fallback for text libcurl refuses: everything between "://" and the
 * last '@' before the path goes, user name included, since without a
 * parse we cannot tell where the user ends and the password starts.
 */
static char *redact_by_hand(const char *url)
{
	const char *start = strstr(url, "://"), *end, *at = NULL;
	char *out;
	size_t head, tail;

	if (!start)
		return strdup(url);
	start += 3;
	end = start + strcspn(start, "/?#");
	for (const char *p = start; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return strdup(url);
	head = (size_t)(start - url);
	tail = strlen(at);
	out = malloc(head + strlen(REDACTED) + tail + 1);
	if (!out)
		return NULL;
	memcpy(out, url, head);
	memcpy(out + head, REDACTED, strlen(REDACTED));
	memcpy(out + head + strlen(REDACTED), at, tail + 1);
	return out;
}

char *redact_url(const char *url)
{
	CURLU *u = curl_url();
	char *password = NULL, *built = NULL, *out = NULL;

	if (!u)
		return NULL;
	/* Any scheme: what is shown must be safe whatever the row holds. */
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		out = redact_by_hand(url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PASSWORD, &password, 0) != CURLUE_OK) {
		out = strdup(url); /* no password: shown as given */
		goto out;
	}
	if (curl_url_set(u, CURLUPART_PASSWORD, REDACTED, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &built, 0) != CURLUE_OK) {
		out = redact_by_hand(url);
		goto out;
	}
	out = strdup(built);
out:
	curl_free(password);
	curl_free(built);
	curl_url_cleanup(u);
	return out;
}
