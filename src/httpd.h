/*
 * httpd.h -- a tiny embedded HTTP/1.x server for health checks and metrics.
 *
 * One thread polls the listen socket, a self-pipe and up to max_clients
 * nonblocking connections. Each connection carries one GET or HEAD request:
 * the head is read (at most HTTP_MAX_HEAD bytes, within read_timeout_ms),
 * the handler fills a response, the server writes it with
 * `Connection: close` and closes. Request bodies are ignored. Malformed,
 * oversized, slow and unsupported requests get a short text/plain error
 * (400, 405, 408, 414, 431, 505) without reaching the handler. Overload is
 * never answered with a status a probe could take for the service's: at
 * max_clients a new connection takes the slot of the oldest client still
 * sending its head once that one has had 250 ms (it is closed without an
 * answer); otherwise new connections wait in the listen backlog until a
 * slot frees. libc and pthreads only.
 */
#ifndef PGEVENTD_HTTPD_H
#define PGEVENTD_HTTPD_H

#include <stddef.h>
#include <stdint.h>

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

struct http_response {
	int status;               /* 200, 404, 503, ... (500 when the handler sets none) */
	const char *content_type; /* static string; NULL means text/plain */
	char *body;               /* malloc'd by the handler, freed by the server; may be NULL */
	size_t body_len;
};

/* Called on the server thread for each GET/HEAD request; must be quick and
 * never block on the database. For HEAD the server sends the headers of
 * the response the handler builds and drops its body. */
typedef void (*http_handler_fn)(void *arg, const struct http_request *req,
                                struct http_response *resp);

struct httpd_options {
	/* "host:port", "[::1]:port", ":port" or "*:port" = all addresses;
	 * port 0 = ephemeral. */
	const char *listen;
	int max_clients;     /* default 32 when 0 */
	int read_timeout_ms; /* default 2000 when 0; also bounds the write */
};

struct httpd;

/*
 * Bind and listen synchronously, then start the server thread (with every
 * signal blocked). Returns NULL with a message in err ("cannot listen on
 * 127.0.0.1:8080: Address already in use") on failure.
 */
struct httpd *httpd_start(const struct httpd_options *opt, http_handler_fn fn, void *arg, char *err,
                          size_t errlen);

/* The bound port (useful with port 0). */
int httpd_port(const struct httpd *h);

/* Poll-loop iterations so far; advances at least twice a second while the
 * thread is alive, so a watchdog can tell a stuck server. Thread-safe. */
uint64_t httpd_turns(const struct httpd *h);

/* Wake the thread (self-pipe), join it, close every socket, free h.
 * Responses in flight are dropped. NULL is a no-op. */
void httpd_stop(struct httpd *h);

#endif
