/* http_parse.c -- the HTTP/1.x request-head parser: pure, so the server, the unit tests and the
 * fuzz target share it. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http_parse.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Cursor over the part of the buffer the parser may look at. */
struct scan {
	const unsigned char *b;
	size_t n; /* bytes available, at most HTTP_MAX_HEAD */
	size_t i; /* next byte */
};

/* RFC 9110 tchar: the characters of methods and field names. */
static bool is_tchar(unsigned char c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && memchr(extra, c, sizeof(extra) - 1) != NULL;
}

/* Consume the CRLF or bare LF at the cursor. */
static enum http_parse eat_eol(struct scan *s)
{
	if (s->i == s->n)
		return HTTP_PARSE_INCOMPLETE;
	if (s->b[s->i] == '\n') {
		s->i++;
		return HTTP_PARSE_OK;
	}
	if (s->b[s->i] != '\r')
		return HTTP_PARSE_BAD;
	if (s->i + 1 == s->n)
		return HTTP_PARSE_INCOMPLETE;
	if (s->b[s->i + 1] != '\n')
		return HTTP_PARSE_BAD; /* bare CR */
	s->i += 2;
	return HTTP_PARSE_OK;
}

static enum http_parse parse_method(struct scan *s, struct http_request *req)
{
	size_t start = s->i, len;
	const unsigned char *m = s->b + start;

	while (s->i < s->n && is_tchar(s->b[s->i]))
		s->i++;
	if (s->i == s->n)
		return HTTP_PARSE_INCOMPLETE;
	if (s->b[s->i] != ' ' || s->i == start)
		return HTTP_PARSE_BAD;
	len = s->i - start;
	if (len == 3 && memcmp(m, "GET", 3) == 0)
		req->method = HTTP_METHOD_GET;
	else if (len == 4 && memcmp(m, "HEAD", 4) == 0)
		req->method = HTTP_METHOD_HEAD;
	s->i++;
	return HTTP_PARSE_OK;
}

/* For an absolute-form target ("http://host:port/path?q"), where its path
 * (or '?', or the end) starts; NULL for anything else. */
static const char *after_authority(const char *t, const char *end)
{
	static const char *const schemes[] = { "http://", "https://" };

	for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
		size_t sl = strlen(schemes[k]);
		const char *a = t + sl, *p;

		if ((size_t)(end - t) < sl || strncasecmp(t, schemes[k], sl) != 0)
			continue;
		for (p = a; p < end && *p != '/' && *p != '?'; p++)
			;
		return p == a ? NULL : p;
	}
	return NULL;
}

/* Split a complete request-target (at most 1023 bytes) into path and query. */
static enum http_parse split_target(const char *t, size_t len, struct http_request *req)
{
	const char *end = t + len, *path, *q;

	if (len == 1 && t[0] == '*') {
		/* asterisk-form is only for OPTIONS; GET * makes no sense */
		if (req->method != HTTP_METHOD_OTHER)
			return HTTP_PARSE_BAD;
		memcpy(req->path, "*", 2);
		return HTTP_PARSE_OK;
	}
	path = t[0] == '/' ? t : after_authority(t, end);
	if (!path)
		return HTTP_PARSE_BAD;
	q = memchr(path, '?', (size_t)(end - path));
	if (!q)
		q = end;
	if (q == path) {
		memcpy(req->path, "/", 2); /* "http://host" or "http://host?q" */
	} else {
		memcpy(req->path, path, (size_t)(q - path));
		req->path[q - path] = '\0';
	}
	if (q < end) {
		memcpy(req->query, q + 1, (size_t)(end - q - 1));
		req->query[end - q - 1] = '\0';
	}
	return HTTP_PARSE_OK;
}

static enum http_parse parse_target(struct scan *s, struct http_request *req)
{
	size_t start = s->i;
	enum http_parse r;

	while (s->i < s->n && s->b[s->i] != ' ') {
		unsigned char c = s->b[s->i];

		if (c < 0x21 || c > 0x7e || c == '#')
			return HTTP_PARSE_BAD;
		if (s->i - start == sizeof(req->path) - 1)
			return HTTP_PARSE_URI_TOO_LONG;
		s->i++;
	}
	if (s->i == s->n)
		return HTTP_PARSE_INCOMPLETE;
	if (s->i == start)
		return HTTP_PARSE_BAD;
	r = split_target((const char *)s->b + start, s->i - start, req);
	s->i++;
	return r;
}

static enum http_parse parse_version(struct scan *s, struct http_request *req)
{
	static const char shape[] = "HTTP/9.9"; /* '9' stands for any digit */
	size_t start = s->i;
	enum http_parse r;
	int major, minor;

	for (size_t k = 0; k < sizeof(shape) - 1; k++, s->i++) {
		unsigned char c;

		if (s->i == s->n)
			return HTTP_PARSE_INCOMPLETE;
		c = s->b[s->i];
		if (shape[k] == '9' ? (c < '0' || c > '9') : c != (unsigned char)shape[k])
			return HTTP_PARSE_BAD;
	}
	r = eat_eol(s);
	if (r != HTTP_PARSE_OK)
		return r;
	major = s->b[start + 5] - '0';
	minor = s->b[start + 7] - '0';
	if (major != 1 || minor > 1)
		return HTTP_PARSE_VERSION;
	req->version_minor = minor;
	return HTTP_PARSE_OK;
}

/* Header fields up to and including the blank line; values are checked, not kept. */
static enum http_parse parse_fields(struct scan *s)
{
	enum http_parse r;

	for (;;) {
		size_t start = s->i;

		if (s->i == s->n)
			return HTTP_PARSE_INCOMPLETE;
		if (s->b[s->i] == '\r' || s->b[s->i] == '\n')
			return eat_eol(s);
		while (s->i < s->n && is_tchar(s->b[s->i]))
			s->i++;
		if (s->i == s->n)
			return HTTP_PARSE_INCOMPLETE;
		/* also rejects obs-fold (a line starting with SP or HTAB) and
		 * whitespace between the name and the colon (RFC 9112 5.1) */
		if (s->b[s->i] != ':' || s->i == start)
			return HTTP_PARSE_BAD;
		for (s->i++; s->i < s->n; s->i++) {
			unsigned char c = s->b[s->i];

			if (c == '\r' || c == '\n')
				break;
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return HTTP_PARSE_BAD;
		}
		r = eat_eol(s);
		if (r != HTTP_PARSE_OK)
			return r;
	}
}

static enum http_parse parse_head(struct scan *s, struct http_request *req)
{
	enum http_parse r;

	/* RFC 9112 2.2: ignore empty lines before the request-line */
	while (s->i < s->n && (s->b[s->i] == '\r' || s->b[s->i] == '\n')) {
		r = eat_eol(s);
		if (r != HTTP_PARSE_OK)
			return r;
	}
	r = parse_method(s, req);
	if (r == HTTP_PARSE_OK)
		r = parse_target(s, req);
	if (r == HTTP_PARSE_OK)
		r = parse_version(s, req);
	if (r == HTTP_PARSE_OK)
		r = parse_fields(s);
	if (r == HTTP_PARSE_OK)
		req->head_len = s->i;
	return r;
}

/* One pass over at most HTTP_MAX_HEAD bytes; every check is made as soon
 * as its bytes are there, so an error never waits for the end of the head. */
enum http_parse http_parse_request(const char *buf, size_t len, struct http_request *req)
{
	struct scan s = { (const unsigned char *)buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD,
		          0 };
	enum http_parse r;

	req->method = HTTP_METHOD_OTHER;
	req->path[0] = '\0';
	req->query[0] = '\0';
	req->version_minor = 0;
	req->head_len = 0;
	r = parse_head(&s, req);
	if (r == HTTP_PARSE_INCOMPLETE && len >= HTTP_MAX_HEAD)
		return HTTP_PARSE_TOO_LARGE;
	return r;
}
