/*
 * http_parse.h -- the HTTP/1.x request-head parser the embedded server
 * (httpd.h) uses: a pure function over bytes, built alone for the fuzz
 * target (tests/fuzz/fuzz_http_parse.c).
 */
#ifndef PGEVENTD_HTTP_PARSE_H
#define PGEVENTD_HTTP_PARSE_H

#include <stddef.h>

/* Largest request head accepted, blank line included (431 beyond). */
#define HTTP_MAX_HEAD 8192

enum http_method { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_OTHER };

enum http_parse {
	HTTP_PARSE_OK,
	HTTP_PARSE_INCOMPLETE,   /* a prefix of a possibly valid head: read more */
	HTTP_PARSE_BAD,          /* 400 */
	HTTP_PARSE_TOO_LARGE,    /* 431: no end of head in the first HTTP_MAX_HEAD bytes */
	HTTP_PARSE_URI_TOO_LONG, /* 414: request-target over 1023 bytes */
	HTTP_PARSE_VERSION,      /* 505: well-formed version other than HTTP/1.0 and 1.1 */
};

struct http_request {
	/* Set as soon as the method token is read, so a server can leave the
	 * body out of an error answer to HEAD; OTHER until then. */
	enum http_method method;
	/* Raw path without the query string, NUL-terminated: starts with '/'
	 * (absolute-form targets are reduced to their path), or is "*" (only
	 * for methods other than GET and HEAD). Not percent-decoded. */
	char path[1024];
	char query[1024];  /* raw query string without '?', may be empty */
	int version_minor; /* HTTP/1.x */
	size_t head_len;   /* bytes of the request head including the blank line */
};

/*
 * Parse a request head from buf[0..len). Pure: no allocation, no globals,
 * reads at most HTTP_MAX_HEAD bytes. Errors are reported as early as the
 * bytes allow (a line of garbage is BAD before its end), and every proper
 * prefix of a valid head is INCOMPLETE. Accepts bare LF line ends, leading
 * empty lines, and absent Host; rejects control characters, bare CR,
 * obsolete line folding and whitespace before a field's colon. On OK the
 * request fields are filled; otherwise only `method` is meaningful.
 */
enum http_parse http_parse_request(const char *buf, size_t len, struct http_request *req);

#endif
