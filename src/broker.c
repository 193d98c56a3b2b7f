/* broker.c -- target urls, event fields and templates for the broker transports (see broker.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "broker.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netdb.h>
#include <sys/socket.h>

#include <jansson.h>

#include "netaddr.h"
#include "util.h"

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A malloc'd copy of s[0..len) with %XX and '+' decoded. */
static char *percent_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hex_value(s[i + 1]) >= 0 &&
		    hex_value(s[i + 2]) >= 0) {
			*o++ = (char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i] == '+' ? ' ' : s[i];
		}
	}
	*o = '\0';
	return out;
}

static bool parse_query(const char *q, struct broker_url *u, char *err, size_t errlen)
{
	while (*q) {
		size_t len = strcspn(q, "&");
		const char *eq = memchr(q, '=', len);

		if (len > 0) {
			if (u->nparams == BROKER_MAX_PARAMS) {
				snprintf(err, errlen, "more than %d query parameters",
				         BROKER_MAX_PARAMS);
				return false;
			}
			size_t klen = eq ? (size_t)(eq - q) : len;
			u->keys[u->nparams] = percent_decode(q, klen);
			u->values[u->nparams] =
			    eq ? percent_decode(eq + 1, len - klen - 1) : util_strdup("");
			if (!u->keys[u->nparams] || !u->values[u->nparams]) {
				free(u->keys[u->nparams]);
				free(u->values[u->nparams]);
				snprintf(err, errlen, "out of memory");
				return false;
			}
			u->nparams++;
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return true;
}

bool broker_url_parse(const char *target, struct broker_url *u, char *err, size_t errlen)
{
	const char *sep = strstr(target, "://"), *auth, *slash, *at, *query;

	memset(u, 0, sizeof(*u));
	if (!sep) {
		snprintf(err, errlen, "not a url");
		return false;
	}
	auth = sep + 3;
	slash = auth + strcspn(auth, "/?");
	at = memchr(auth, '@', (size_t)(slash - auth));
	query = strchr(slash, '?');
	u->scheme = percent_decode(target, (size_t)(sep - target));
	if (at)
		u->user = percent_decode(auth, (size_t)(at - auth));
	u->hosts = at ? percent_decode(at + 1, (size_t)(slash - at - 1))
	              : percent_decode(auth, (size_t)(slash - auth));
	if (*slash == '/')
		slash++;
	u->path = percent_decode(slash, query ? (size_t)(query - slash) : strlen(slash));
	if (!u->scheme || !u->hosts || !u->path || (at && !u->user)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (char *p = u->scheme; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (u->user && strchr(u->user, ':')) {
		/* the password is the subscription's secret, never in the url */
		snprintf(err, errlen,
		         "the url must not carry a password: the subscription's "
		         "secret is the password");
		goto fail;
	}
	if (!u->hosts[0]) {
		snprintf(err, errlen, "the url names no host");
		goto fail;
	}
	if (query && !parse_query(query + 1, u, err, errlen))
		goto fail;
	return true;
fail:
	broker_url_release(u);
	return false;
}

void broker_url_release(struct broker_url *u)
{
	free(u->scheme);
	free(u->user);
	free(u->hosts);
	free(u->path);
	for (int i = 0; i < u->nparams; i++) {
		free(u->keys[i]);
		free(u->values[i]);
	}
	memset(u, 0, sizeof(*u));
}

const char *broker_url_param(const struct broker_url *u, const char *key)
{
	for (int i = 0; i < u->nparams; i++)
		if (strcmp(u->keys[i], key) == 0)
			return u->values[i];
	return NULL;
}

bool broker_url_flag(const struct broker_url *u, const char *key)
{
	const char *v = broker_url_param(u, key);

	return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
	             strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0 || v[0] == '\0');
}

/* The librdkafka properties a url may set: tuning, the protocol and
 * mechanism, and PEM files read as certificates and keys (as a NATS
 * url's ca=, cert=, key=). Nothing that loads code, runs a command,
 * holds a secret, or turns verification off. */
static const char *const kafka_allowed[] = {
	"batch.num.messages",
	"batch.size",
	"broker.address.family",
	"client.id",
	"compression.codec",
	"compression.type",
	"linger.ms",
	"message.max.bytes",
	"queue.buffering.max.ms",
	"request.timeout.ms",
	"retry.backoff.ms",
	"sasl.mechanism",
	"sasl.mechanisms",
	"security.protocol",
	"socket.keepalive.enable",
	"socket.timeout.ms",
	"ssl.ca.location",
	"ssl.certificate.location",
	"ssl.key.location",
	"topic.metadata.propagation.max.ms",
	"topic.metadata.refresh.interval.ms",
};

bool broker_kafka_property_allowed(const char *name)
{
	for (size_t i = 0; i < sizeof(kafka_allowed) / sizeof(kafka_allowed[0]); i++)
		if (strcmp(kafka_allowed[i], name) == 0)
			return true;
	return false;
}

bool broker_kafka_properties_ok(const struct broker_url *u, char *err, size_t errlen)
{
	for (int i = 0; i < u->nparams; i++)
		if (strchr(u->keys[i], '.') && !broker_kafka_property_allowed(u->keys[i])) {
			snprintf(err, errlen,
			         "Kafka property %.100s is not one a url may set (see Publishing "
			         "to NATS and Kafka in the README)",
			         u->keys[i]);
			return false;
		}
	return true;
}

bool broker_url_check(const char *target, char *err, size_t errlen)
{
	struct broker_url u;
	bool ok;

	if (!broker_url_parse(target, &u, err, errlen))
		return false;
	ok = strcmp(u.scheme, "kafka") != 0 || broker_kafka_properties_ok(&u, err, errlen);
	broker_url_release(&u);
	return ok;
}

/* ---- relay.block_private_networks ------------------------------------------- */

/* Whether one "host[:port]" ("[v6]:port", or a bare IPv6 address)
 * resolves to an address netaddr_blocked refuses. */
static bool host_blocked(const char *hostport, const char *default_port)
{
	char host[256];
	const char *port = default_port, *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	bool blocked = false;
	size_t len;

	if (hostport[0] == '[') {
		const char *close = strchr(hostport, ']');

		if (!close)
			return false; /* not an address: the library says so */
		len = (size_t)(close - hostport - 1);
		hostport++;
		if (close[1] == ':')
			port = close + 2;
	} else if (colon && strchr(hostport, ':') == colon) {
		len = (size_t)(colon - hostport);
		port = colon + 1;
	} else {
		len = strlen(hostport); /* no port, or a bare IPv6 address */
	}
	if (len == 0 || len >= sizeof(host))
		return false;
	memcpy(host, hostport, len);
	host[len] = '\0';
	/* a name that does not resolve is the library's error to give */
	if (getaddrinfo(host, port && *port ? port : NULL, &hints, &res) != 0)
		return false;
	for (struct addrinfo *a = res; a && !blocked; a = a->ai_next)
		blocked = netaddr_blocked(a->ai_addr);
	freeaddrinfo(res);
	return blocked;
}

bool broker_hosts_blocked(const char *hosts, const char *default_port, char *err, size_t errlen)
{
	char *copy = util_strdup(hosts), *save = NULL;
	bool blocked = false;

	if (!copy)
		return false;
	for (char *h = strtok_r(copy, ",", &save); h && !blocked; h = strtok_r(NULL, ",", &save)) {
		h += strspn(h, " ");
		if (host_blocked(h, default_port)) {
			snprintf(err, errlen,
			         "refused: broker %.200s resolves to a loopback, private or "
			         "link-local address (relay.block_private_networks)",
			         h);
			blocked = true;
		}
	}
	free(copy);
	return blocked;
}

/* ---- the event ----------------------------------------------------------------- */

static const char *string_or_empty(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : "";
}

bool broker_event_parse(const char *body, struct broker_event *ev, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loads(body, 0, &jerr), *agg;

	memset(ev, 0, sizeof(*ev));
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the delivery body is not a JSON object");
		json_decref(root);
		return false;
	}
	ev->root = root;
	ev->id = string_or_empty(root, "id");
	ev->type = string_or_empty(root, "type");
	ev->time = string_or_empty(root, "timestamp");
	agg = json_object_get(root, "aggregate");
	ev->aggregate_type = string_or_empty(agg, "type");
	ev->aggregate_id = string_or_empty(agg, "id");
	return true;
}

void broker_event_release(struct broker_event *ev)
{
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}

char *broker_event_key(const struct broker_event *ev)
{
	char *key;

	if (!ev->aggregate_type[0] && !ev->aggregate_id[0])
		return util_strdup("");
	if (asprintf(&key, "%s/%s", ev->aggregate_type, ev->aggregate_id) < 0)
		return NULL;
	return key;
}

/* ---- templates ----------------------------------------------------------------- */

static const char *field_value(const struct broker_event *ev, const char *name, size_t len)
{
	static const struct {
		const char *name;
		size_t offset;
	} fields[] = {
		{ "event_type", offsetof(struct broker_event, type) },
		{ "aggregate_type", offsetof(struct broker_event, aggregate_type) },
		{ "aggregate_id", offsetof(struct broker_event, aggregate_id) },
		{ "id", offsetof(struct broker_event, id) },
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strlen(fields[i].name) == len && memcmp(fields[i].name, name, len) == 0)
			return *(const char *const *)(const void *)((const char *)ev +
			                                            fields[i].offset);
	return NULL;
}

static bool append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t ncap = (*len + n + 1) * 2;
		char *nb = realloc(*buf, ncap);

		if (!nb)
			return false;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

/*
 * Make the `n` bytes at `s`, one value put into a subject, into what a
 * subject token holds: no whitespace, control character, '*' or '>'; no
 * '.' either (a value's dot would add tokens: aggregate id "1.admin"
 * under "a.{aggregate_id}" would reach a consumer of "a.1.>"), except
 * with `dotted`, for the event type, whose dots are its hierarchy
 * (order.paid) but never make an empty token (".a", "a..b", "a.").
 */
static void subject_token_safe(char *s, size_t n, bool dotted)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= ' ' || c == '*' || c == '>' || c == 0x7f)
			s[i] = '_';
		else if (c == '.' && (!dotted || i == 0 || i == n - 1 || s[i - 1] == '.'))
			s[i] = '_';
	}
}

char *broker_expand(const char *tmpl, const struct broker_event *ev, bool subject_safe, char *err,
                    size_t errlen)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	const char *p = tmpl;

	if (!append(&out, &len, &cap, "", 0))
		goto oom;
	while (*p) {
		const char *open = strchr(p, '{'), *close, *v;

		if (!open) {
			if (!append(&out, &len, &cap, p, strlen(p)))
				goto oom;
			break;
		}
		if (!append(&out, &len, &cap, p, (size_t)(open - p)))
			goto oom;
		close = strchr(open, '}');
		if (!close) {
			snprintf(err, errlen, "template %s: unclosed {", tmpl);
			goto fail;
		}
		v = field_value(ev, open + 1, (size_t)(close - open - 1));
		if (!v) {
			snprintf(err, errlen,
			         "template %s: unknown field %.*s (event_type, aggregate_type, "
			         "aggregate_id, id)",
			         tmpl, (int)(close - open - 1), open + 1);
			goto fail;
		}
		size_t start = len;

		if (!append(&out, &len, &cap, subject_safe && !*v ? "_" : v,
		            subject_safe && !*v ? 1 : strlen(v)))
			goto oom;
		if (subject_safe)
			subject_token_safe(out + start, len - start,
			                   v == ev->type); /* event types are dotted names */
		p = close + 1;
	}
	return out;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(out);
	return NULL;
}
