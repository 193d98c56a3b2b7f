/*
 * conf_values.c -- the syntaxes of configuration values beyond libconfig's
 * own types: durations ("30d", "1h30m", "500ms") and listen addresses.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "conf_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Units of a duration, largest first (conf_format_duration uses the order). */
static const struct {
	const char *name;
	long long ms;
} duration_units[] = {
	{ "w", 7LL * 24 * 3600 * 1000 },
	{ "d", 24LL * 3600 * 1000 },
	{ "h", 3600LL * 1000 },
	{ "m", 60LL * 1000 },
	{ "s", 1000 },
	{ "ms", 1 },
};
#define NUNITS (sizeof(duration_units) / sizeof(duration_units[0]))

bool conf_parse_duration(const char *text, long long *ms)
{
	const char *p = text;
	long long total = 0;

	if (!*p || strcmp(p, "0") == 0) {
		*ms = 0;
		return true;
	}
	while (*p) {
		char *end;
		long long n;
		size_t u;

		if (*p < '0' || *p > '9')
			return false;
		errno = 0;
		n = strtoll(p, &end, 10);
		if (errno || end == p)
			return false;
		p = end;
		/* "ms" before "m": match the longest unit name first. */
		size_t best = NUNITS, best_len = 0;
		for (u = 0; u < NUNITS; u++) {
			size_t len = strlen(duration_units[u].name);

			if (strncmp(p, duration_units[u].name, len) == 0 && len > best_len) {
				best = u;
				best_len = len;
			}
		}
		if (best == NUNITS)
			return false;
		if (n > (LLONG_MAX - total) / duration_units[best].ms)
			return false;
		total += n * duration_units[best].ms;
		p += best_len;
	}
	*ms = total;
	return true;
}

void conf_format_duration(long long ms, char *buf, size_t len)
{
	/* The largest unit that divides it, weeks aside ("14d" reads better
	 * than "2w"): what an operator would have written. */
	buf[0] = '\0';
	if (ms <= 0)
		return;
	for (size_t u = 1; u < NUNITS; u++) {
		if (ms % duration_units[u].ms == 0) {
			snprintf(buf, len, "%lld%s", ms / duration_units[u].ms,
			         duration_units[u].name);
			return;
		}
	}
}

/* Whether `host` is a host name by RFC 1123: dot-separated labels of
 * letters, digits and inner hyphens, and not all digits at the end (so a
 * mistyped IPv4 address such as 999.1.1.1 is not taken for a name). */
static bool is_host_name(const char *host)
{
	size_t total = strlen(host), label = 0;
	bool digits_only = true;

	if (total == 0 || total > 253)
		return false;
	for (const char *p = host;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return !digits_only;
			label = 0;
			digits_only = true;
			continue;
		}
		if (label == 0 && *p == '-')
			return false;
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
		if (*p < '0' || *p > '9')
			digits_only = false;
		label++;
	}
}

/*
 * health.listen as the health server reads it (httpd.c): "" (off),
 * ":port", "*:port", "host:port" or "[ipv6]:port" with a port from 0 (any
 * free one) to 65535, the host a literal IPv4 address or a host name, the
 * IPv6 address a literal with an optional %zone. Whether a name resolves
 * and the port is free is left to the bind. False with the reason in `why`.
 */
bool conf_listen_address_ok(const char *spec, char *why, size_t len)
{
	char host[256];
	const char *colon, *port;
	unsigned long v;

	if (!spec[0])
		return true;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':')
			goto form;
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			goto form;
		if (memchr(spec, ':', (size_t)(colon - spec))) {
			snprintf(why, len, "an IPv6 address goes in brackets, e.g. \"[::1]:8080\"");
			return false;
		}
	}
	port = colon + 1;
	if (!*port || strspn(port, "0123456789") != strlen(port))
		goto form;
	errno = 0;
	v = strtoul(port, NULL, 10);
	if (errno || v > 65535 || strlen(port) > 5) { /* httpd.c reads 5 digits at most */
		snprintf(why, len, "port %s is out of range (0 to 65535) in \"%s\"", port, spec);
		return false;
	}
	if ((size_t)(colon - spec) >= sizeof(host))
		goto host;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (spec[0] == '[') {
		struct in6_addr a6;
		char *zone;

		memmove(host, host + 1, strlen(host)); /* drop the brackets */
		host[strlen(host) - 1] = '\0';
		zone = strchr(host, '%');
		if (zone)
			*zone++ = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1 ||
		    (zone && (!*zone || strspn(zone, "abcdefghijklmnopqrstuvwxyz"
		                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		                            strlen(zone))))
			goto host;
		return true;
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		return true;
	if (strspn(host, "0123456789.") == strlen(host)) {
		struct in_addr a4;

		if (inet_pton(AF_INET, host, &a4) != 1)
			goto host;
		return true;
	}
	if (is_host_name(host))
		return true;
host:
	snprintf(why, len, "\"%.*s\" is not an IPv4 address, [IPv6 address] or host name",
	         (int)(colon - spec), spec);
	return false;
form:
	snprintf(why, len, "must be host:port, [ipv6]:port, :port or *:port, got \"%s\"", spec);
	return false;
}
