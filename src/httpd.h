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

#include "http_parse.h"

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

/* Wake the thread (self-pipe), join it, close every socket, free h.
 * Responses in flight are dropped. NULL is a no-op. */
void httpd_stop(struct httpd *h);

#endif
