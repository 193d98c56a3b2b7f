/* check_httpd.c -- the HTTP request parser, and the server over real sockets on 127.0.0.1. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "src/http_parse.h"
#include "src/httpd.h"
#include "src/util.h"
#include "tests/check_unit.h"

/* ---- parser ---------------------------------------------------------- */

static enum http_parse parse(const char *s, struct http_request *req)
{
	return http_parse_request(s, strlen(s), req);
}

/* A head of exactly `len` bytes: a GET whose one header is padded. */
static char *padded_head(size_t len)
{
	static const char pre[] = "GET / HTTP/1.1\r\nX-Pad: ";
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_ge(len, sizeof(pre) - 1 + 4);
	memcpy(s, pre, sizeof(pre) - 1);
	memset(s + sizeof(pre) - 1, 'a', len - (sizeof(pre) - 1));
	memcpy(s + len - 4, "\r\n\r\n", 4);
	s[len] = '\0';
	return s;
}

/* A GET whose target is '/' followed by n-1 'a's. */
static char *long_target(size_t n, const char *rest)
{
	char *s = malloc(n + strlen(rest) + 5);

	ck_assert_ptr_nonnull(s);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', n - 1);
	strcpy(s + 4 + n, rest);
	return s;
}

START_TEST(test_parse_get_fills_the_request)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: localhost:9187\r\nAccept: */*\r\n\r\n";
	struct http_request req;

	ck_assert_int_eq(parse(s, &req), HTTP_PARSE_OK);
	ck_assert_int_eq(req.method, HTTP_METHOD_GET);
	ck_assert_str_eq(req.path, "/metrics");
	ck_assert_str_eq(req.query, "");
	ck_assert_int_eq(req.version_minor, 1);
	ck_assert_uint_eq(req.head_len, strlen(s));
}
END_TEST

START_TEST(test_parse_head_is_head)
{
	struct http_request req;

	ck_assert_int_eq(parse("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_int_eq(req.method, HTTP_METHOD_HEAD);
	ck_assert_str_eq(req.path, "/healthz");
}
END_TEST

START_TEST(test_parse_splits_the_query)
{
	struct http_request req;

	ck_assert_int_eq(parse("GET /a/b?x=1&y=%20 HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/a/b");
	ck_assert_str_eq(req.query, "x=1&y=%20");
	ck_assert_int_eq(parse("GET /? HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/");
	ck_assert_str_eq(req.query, "");
	ck_assert_int_eq(parse("GET /a?b?c HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/a");
	ck_assert_str_eq(req.query, "b?c");
}
END_TEST

START_TEST(test_parse_http10_without_host)
{
	struct http_request req;

	ck_assert_int_eq(parse("GET / HTTP/1.0\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_int_eq(req.version_minor, 0);
	ck_assert_uint_eq(req.head_len, 18);
}
END_TEST

START_TEST(test_parse_accepts_bare_lf_and_leading_empty_lines)
{
	struct http_request req;

	ck_assert_int_eq(parse("GET /x HTTP/1.1\nHost: a\n\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/x");
	ck_assert_uint_eq(req.head_len, 25);
	ck_assert_int_eq(parse("\r\n\nGET / HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_uint_eq(req.head_len, 21);
}
END_TEST

START_TEST(test_parse_reduces_absolute_form_to_its_path)
{
	struct http_request req;

	ck_assert_int_eq(parse("GET http://example.com:80/x/y?z=1 HTTP/1.1\r\n\r\n", &req),
	                 HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/x/y");
	ck_assert_str_eq(req.query, "z=1");
	ck_assert_int_eq(parse("GET HTTPS://example.com HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/");
	ck_assert_int_eq(parse("GET http://h?q HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_str_eq(req.path, "/");
	ck_assert_str_eq(req.query, "q");
}
END_TEST

START_TEST(test_parse_leaves_the_body_out_of_the_head)
{
	const char *s = "GET / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
	struct http_request req;

	ck_assert_int_eq(parse(s, &req), HTTP_PARSE_OK);
	ck_assert_uint_eq(req.head_len, strlen(s) - 4);
}
END_TEST

START_TEST(test_parse_every_prefix_is_incomplete)
{
	static const char *const heads[] = {
		"GET /metrics?a=b HTTP/1.1\r\nHost: localhost\r\nUser-Agent: x/1\r\n\r\n",
		"HEAD / HTTP/1.0\n\n",
		"\r\nOPTIONS * HTTP/1.1\r\nA:\r\nB: \t v\r\n\r\n",
		"GET http://h:1/p HTTP/1.1\r\n\r\n",
	};
	struct http_request req;

	for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		size_t len = strlen(heads[h]);

		for (size_t k = 0; k < len; k++)
			ck_assert_msg(http_parse_request(heads[h], k, &req) ==
			                  HTTP_PARSE_INCOMPLETE,
			              "head %zu, prefix %zu", h, k);
		ck_assert_int_eq(http_parse_request(heads[h], len, &req), HTTP_PARSE_OK);
		ck_assert_uint_eq(req.head_len, len);
	}
}
END_TEST

static const struct {
	const char *head;
	size_t len; /* 0: strlen(head) */
	enum http_parse want;
} bad_heads[] = {
	{ "GET\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET /\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET  / HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1 \r\n\r\n", 0, HTTP_PARSE_BAD },
	{ " GET / HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / http/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.10\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/11\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET x HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET * HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET /a#frag HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET http:///x HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET ftp://h/x HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GE(T / HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1\r\n: empty\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "GET / HTTP/1.1\r\r\n\r\n", 0, HTTP_PARSE_BAD },
	{ "\r\r\nGET / HTTP/1.1\r\n\r\n", 0, HTTP_PARSE_BAD },
	/* rejected before the line ends: no need to wait for more */
	{ "\x16\x03\x01\x02\x00\x01", 6, HTTP_PARSE_BAD },
	{ "GET /\x01", 0, HTTP_PARSE_BAD },
	{ "GET / HTTX", 0, HTTP_PARSE_BAD },
};

START_TEST(test_parse_rejects_bad_request_lines)
{
	struct http_request req;
	size_t len = bad_heads[_i].len ? bad_heads[_i].len : strlen(bad_heads[_i].head);

	ck_assert_msg(http_parse_request(bad_heads[_i].head, len, &req) == bad_heads[_i].want,
	              "row %d", _i);
}
END_TEST

START_TEST(test_parse_rejects_control_characters)
{
	static const char nul_target[] = "GET /a\0b HTTP/1.1\r\n\r\n";
	static const char nul_value[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	struct http_request req;

	ck_assert_int_eq(http_parse_request(nul_target, sizeof(nul_target) - 1, &req),
	                 HTTP_PARSE_BAD);
	ck_assert_int_eq(http_parse_request(nul_value, sizeof(nul_value) - 1, &req),
	                 HTTP_PARSE_BAD);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", &req), HTTP_PARSE_BAD);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", &req), HTTP_PARSE_BAD);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &req), HTTP_PARSE_BAD);
	ck_assert_int_eq(parse("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_BAD);
	/* tabs and obs-text are fine in a value */
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nX:\ta\tb \xff\r\n\r\n", &req), HTTP_PARSE_OK);
}
END_TEST

START_TEST(test_parse_target_over_1023_bytes_is_414)
{
	struct http_request req;
	char *ok = long_target(1023, " HTTP/1.1\r\n\r\n");
	char *over = long_target(1024, " HTTP/1.1\r\n\r\n");
	char *huge = long_target(9000, "");

	ck_assert_int_eq(parse(ok, &req), HTTP_PARSE_OK);
	ck_assert_uint_eq(strlen(req.path), 1023);
	ck_assert_int_eq(parse(over, &req), HTTP_PARSE_URI_TOO_LONG);
	/* known before the line ends, and before the head cap */
	ck_assert_int_eq(http_parse_request(over, 4 + 1024, &req), HTTP_PARSE_URI_TOO_LONG);
	ck_assert_int_eq(parse(huge, &req), HTTP_PARSE_URI_TOO_LONG);
	free(ok);
	free(over);
	free(huge);
}
END_TEST

START_TEST(test_parse_head_over_8k_is_431)
{
	struct http_request req;
	char *at_cap = padded_head(HTTP_MAX_HEAD), *over = padded_head(HTTP_MAX_HEAD + 1);
	char *huge = padded_head(9 * 1024);

	ck_assert_int_eq(parse(at_cap, &req), HTTP_PARSE_OK);
	ck_assert_uint_eq(req.head_len, HTTP_MAX_HEAD);
	ck_assert_int_eq(parse(over, &req), HTTP_PARSE_TOO_LARGE);
	ck_assert_int_eq(http_parse_request(huge, HTTP_MAX_HEAD - 1, &req), HTTP_PARSE_INCOMPLETE);
	ck_assert_int_eq(http_parse_request(huge, HTTP_MAX_HEAD, &req), HTTP_PARSE_TOO_LARGE);
	ck_assert_int_eq(parse(huge, &req), HTTP_PARSE_TOO_LARGE);
	free(at_cap);
	free(over);
	free(huge);
}
END_TEST

START_TEST(test_parse_other_versions_are_505)
{
	struct http_request req;

	ck_assert_int_eq(parse("GET / HTTP/2.0\r\n\r\n", &req), HTTP_PARSE_VERSION);
	ck_assert_int_eq(parse("GET / HTTP/1.2\r\n\r\n", &req), HTTP_PARSE_VERSION);
	ck_assert_int_eq(parse("GET / HTTP/0.9\r\n\r\n", &req), HTTP_PARSE_VERSION);
	ck_assert_int_eq(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &req), HTTP_PARSE_VERSION);
	/* the method is known even so: a HEAD gets no body */
	ck_assert_int_eq(parse("HEAD / HTTP/3.0\r\n\r\n", &req), HTTP_PARSE_VERSION);
	ck_assert_int_eq(req.method, HTTP_METHOD_HEAD);
}
END_TEST

START_TEST(test_parse_other_methods_are_other)
{
	struct http_request req;

	ck_assert_int_eq(parse("POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n", &req),
	                 HTTP_PARSE_OK);
	ck_assert_int_eq(req.method, HTTP_METHOD_OTHER);
	ck_assert_int_eq(parse("get / HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_int_eq(req.method, HTTP_METHOD_OTHER);
	ck_assert_int_eq(parse("OPTIONS * HTTP/1.1\r\n\r\n", &req), HTTP_PARSE_OK);
	ck_assert_int_eq(req.method, HTTP_METHOD_OTHER);
	ck_assert_str_eq(req.path, "*");
}
END_TEST

/* ---- server ---------------------------------------------------------- */

#define SLOW_MS 3000 /* read timeout when a test needs the server to wait */

static atomic_int handler_calls;

#define BIG_BODY (32u << 20) /* more than loopback socket buffers take */

/* /hello is "hello\n", /big is BIG_BODY bytes, /nothing sets no status
 * (500), the rest is 404. */
static void test_handler(void *arg, const struct http_request *req, struct http_response *resp)
{
	(void)arg;
	atomic_fetch_add(&handler_calls, 1);
	if (strcmp(req->path, "/nothing") == 0)
		return;
	resp->content_type = "text/plain; charset=utf-8";
	if (strcmp(req->path, "/hello") == 0) {
		resp->status = 200;
		resp->body = strdup("hello\n");
		resp->body_len = 6;
	} else if (strcmp(req->path, "/big") == 0) {
		resp->status = 200;
		resp->body = malloc(BIG_BODY);
		if (resp->body)
			memset(resp->body, 'b', BIG_BODY);
		resp->body_len = resp->body ? BIG_BODY : 0;
	} else {
		resp->status = 404;
		resp->body = strdup("not found\n");
		resp->body_len = 10;
	}
}

static struct httpd *start(int max_clients, int timeout_ms)
{
	struct httpd_options opt = { "127.0.0.1:0", max_clients, timeout_ms };
	char err[256] = "";
	struct httpd *h = httpd_start(&opt, test_handler, NULL, err, sizeof(err));

	ck_assert_msg(h != NULL, "%s", err);
	ck_assert_int_gt(httpd_port(h), 0);
	atomic_store(&handler_calls, 0);
	return h;
}

/* A blocking client socket with 5 s timeouts, or -1 (no ck_assert: threads use it). */
static int dial(int port)
{
	struct sockaddr_in a;
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int dial_ok(int port)
{
	int fd = dial(port);

	ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
	return fd;
}

static bool send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		buf += r;
		len -= (size_t)r;
	}
	return true;
}

/* Read until EOF (or a reset, or 5 s); NUL-terminated. */
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap - 1) {
		ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);

		if (r > 0)
			n += (size_t)r;
		else if (r == 0 || errno != EINTR)
			break;
	}
	buf[n] = '\0';
	return n;
}

/* Send a request on a new connection, return everything the server sent. */
static size_t exchange(int port, const char *req, size_t len, char *buf, size_t cap)
{
	int fd = dial_ok(port);
	size_t n;

	ck_assert(send_all(fd, req, len));
	n = read_all(fd, buf, cap);
	close(fd);
	return n;
}

/* Check the one Date line ("Date: Sun, 06 Nov 1994 08:49:37 GMT") and cut
 * it out, so the rest can be compared byte for byte. */
static void cut_date(char *resp)
{
	char *d = strstr(resp, "\r\nDate: "), *end;

	ck_assert_msg(d != NULL, "no Date: %s", resp);
	d += 2;
	end = strstr(d, "\r\n");
	ck_assert_ptr_nonnull(end);
	ck_assert_int_eq(end - d, 6 + 29);
	ck_assert_msg(d[9] == ',' && memcmp(end - 4, " GMT", 4) == 0, "%.*s", (int)(end - d), d);
	memmove(d, end + 2, strlen(end + 2) + 1);
	ck_assert_ptr_null(strstr(resp, "Date:"));
}

static int64_t since(int64_t t0)
{
	return util_mono_ms() - t0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#define REQ(s) s, sizeof(s) - 1

START_TEST(test_get_answers_exact_bytes)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), buf, sizeof(buf));
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 200 OK\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 6\r\n"
	                      "Connection: close\r\n"
	                      "\r\n"
	                      "hello\n");
	httpd_stop(h);
}
END_TEST

START_TEST(test_head_answers_headers_only)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("HEAD /hello HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 200 OK\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 6\r\n"
	                      "Connection: close\r\n"
	                      "\r\n");
	httpd_stop(h);
}
END_TEST

START_TEST(test_http10_get_is_answered)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /hello HTTP/1.0\r\n\r\n"), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ck_assert_msg(strstr(buf, "\r\n\r\nhello\n"), "%s", buf);
	httpd_stop(h);
}
END_TEST

START_TEST(test_unknown_path_gets_the_handlers_404)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /nope?x=1 HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 404 Not Found\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 10\r\n"
	                      "Connection: close\r\n"
	                      "\r\n"
	                      "not found\n");
	httpd_stop(h);
}
END_TEST

START_TEST(test_handler_without_status_gets_500)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /nothing HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0, "%s", buf);
	httpd_stop(h);
}
END_TEST

START_TEST(test_request_body_is_ignored)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), buf,
	         sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ck_assert_msg(strstr(buf, "\r\n\r\nhello\n"), "%s", buf);
	httpd_stop(h);
}
END_TEST

START_TEST(test_other_method_gets_405_with_allow)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), buf,
	         sizeof(buf));
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 405 Method Not Allowed\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 19\r\n"
	                      "Allow: GET, HEAD\r\n"
	                      "Connection: close\r\n"
	                      "\r\n"
	                      "Method Not Allowed\n");
	ck_assert_int_eq(atomic_load(&handler_calls), 0);
	httpd_stop(h);
}
END_TEST

START_TEST(test_malformed_request_gets_400)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET /hello HTTP/1.1\r\nBad Header\r\n\r\n"), buf, sizeof(buf));
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 400 Bad Request\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 12\r\n"
	                      "Connection: close\r\n"
	                      "\r\n"
	                      "Bad Request\n");
	ck_assert_int_eq(atomic_load(&handler_calls), 0);
	httpd_stop(h);
}
END_TEST

START_TEST(test_9k_head_gets_431)
{
	struct httpd *h = start(0, 0);
	char *req = padded_head(9 * 1024), buf[1024];

	exchange(httpd_port(h), req, strlen(req), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0,
	              "%s", buf);
	free(req);
	httpd_stop(h);
}
END_TEST

START_TEST(test_long_target_gets_414)
{
	struct httpd *h = start(0, 0);
	char *req = long_target(2000, " HTTP/1.1\r\n\r\n"), buf[1024];

	exchange(httpd_port(h), req, strlen(req), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 414 URI Too Long\r\n", 27) == 0, "%s", buf);
	free(req);
	httpd_stop(h);
}
END_TEST

START_TEST(test_http2_gets_505)
{
	struct httpd *h = start(0, 0);
	char buf[1024];

	exchange(httpd_port(h), REQ("GET / HTTP/2.0\r\n\r\n"), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 505 HTTP Version Not Supported\r\n", 41) == 0, "%s",
	              buf);
	httpd_stop(h);
}
END_TEST

START_TEST(test_silent_client_gets_408)
{
	struct httpd *h = start(0, 200);
	int fd = dial_ok(httpd_port(h));
	int64_t t0 = util_mono_ms(), ms;
	char buf[1024];

	read_all(fd, buf, sizeof(buf));
	ms = since(t0);
	close(fd);
	cut_date(buf);
	ck_assert_str_eq(buf, "HTTP/1.1 408 Request Timeout\r\n"
	                      "Content-Type: text/plain; charset=utf-8\r\n"
	                      "Content-Length: 16\r\n"
	                      "Connection: close\r\n"
	                      "\r\n"
	                      "Request Timeout\n");
	ck_assert_msg(ms >= 150 && ms < 2000, "408 after %lld ms", (long long)ms);
	httpd_stop(h);
}
END_TEST

START_TEST(test_trickling_client_gets_408_on_time)
{
	static const char req[] = "GET /hello HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	struct httpd *h = start(0, 300);
	int fd = dial_ok(httpd_port(h));
	int64_t t0 = util_mono_ms(), ms;
	char buf[1024];

	/* a byte every 20 ms: each one must not push the deadline back */
	for (size_t k = 0; k < sizeof(req) - 1 && since(t0) < 600; k++) {
		if (!send_all(fd, req + k, 1))
			break;
		sleep_ms(20);
	}
	read_all(fd, buf, sizeof(buf));
	ms = since(t0);
	close(fd);
	ck_assert_msg(strncmp(buf, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0, "%s", buf);
	ck_assert_msg(ms < 1500, "408 after %lld ms", (long long)ms);
	httpd_stop(h);
}
END_TEST

/* How long a good request takes, in ms; it must be answered 200. */
static int64_t timed_hello(int port)
{
	int64_t t0 = util_mono_ms();
	char buf[1024];

	exchange(port, REQ("GET /hello HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	return since(t0);
}

START_TEST(test_silent_client_does_not_block_others)
{
	struct httpd *h = start(0, SLOW_MS);
	int silent = dial_ok(httpd_port(h)), half = dial_ok(httpd_port(h));
	int64_t ms;

	ck_assert(send_all(half, REQ("GET /hello HTTP/1.1\r\nHost:")));
	sleep_ms(50);
	ms = timed_hello(httpd_port(h));
	ck_assert_msg(ms < SLOW_MS / 2, "good request took %lld ms", (long long)ms);
	close(silent);
	close(half);
	httpd_stop(h);
}
END_TEST

struct flood {
	int port;
	size_t bytes;
	size_t chunk;
	int pause_ms; /* between chunks */
};

/* A client sending an endless header line until the server gives up on it. */
static void *flood_main(void *arg)
{
	const struct flood *f = arg;
	static const char start_line[] = "GET /hello HTTP/1.1\r\nX-Flood: ";
	char *junk = malloc(f->chunk);
	char buf[1024];
	int fd = dial(f->port);

	if (fd >= 0 && junk) {
		memset(junk, 'a', f->chunk);
		send_all(fd, start_line, sizeof(start_line) - 1);
		for (size_t sent = 0; sent < f->bytes; sent += f->chunk) {
			if (!send_all(fd, junk, f->chunk))
				break;
			if (f->pause_ms)
				sleep_ms(f->pause_ms);
		}
		read_all(fd, buf, sizeof(buf));
	}
	if (fd >= 0)
		close(fd);
	free(junk);
	return NULL;
}

START_TEST(test_flood_clients_do_not_block_others)
{
	struct httpd *h = start(0, SLOW_MS);
	struct flood at_once = { httpd_port(h), 1 << 20, 1 << 20, 0 };
	struct flood slowly = { httpd_port(h), 1 << 20, 64, 10 };
	pthread_t t1, t2;
	int64_t ms;

	ck_assert_int_eq(pthread_create(&t1, NULL, flood_main, &at_once), 0);
	ck_assert_int_eq(pthread_create(&t2, NULL, flood_main, &slowly), 0);
	sleep_ms(100);
	for (int k = 0; k < 3; k++) {
		ms = timed_hello(httpd_port(h));
		ck_assert_msg(ms < SLOW_MS / 2, "good request took %lld ms", (long long)ms);
	}
	httpd_stop(h); /* closes the slow one too */
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
}
END_TEST

/* Whether the server closed fd (EOF or reset) without sending a byte. */
static bool closed_without_answer(int fd)
{
	char buf[64];
	ssize_t r = recv(fd, buf, sizeof(buf), 0);

	return r == 0 || (r < 0 && errno == ECONNRESET);
}

START_TEST(test_idle_clients_over_the_cap_make_way_for_a_request)
{
	struct httpd *h = start(2, SLOW_MS);
	int a = dial_ok(httpd_port(h)), b;
	char buf[1024];
	int64_t t0;

	sleep_ms(50); /* a is the older */
	b = dial_ok(httpd_port(h));
	sleep_ms(100); /* both taken by the server */
	t0 = util_mono_ms();
	exchange(httpd_port(h), REQ("GET /hello HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ck_assert_int_lt(since(t0), SLOW_MS / 2);
	/* the oldest idle client made way, closed without an answer */
	ck_assert(closed_without_answer(a));
	ck_assert_int_lt(since(t0), SLOW_MS / 2);
	/* the other one is still waited for */
	ck_assert_int_eq(recv(b, buf, sizeof(buf), MSG_DONTWAIT), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(a);
	close(b);
	httpd_stop(h);
}
END_TEST

START_TEST(test_over_the_cap_while_answering_waits_for_a_slot)
{
	struct httpd *h = start(2, SLOW_MS);
	int a = dial_ok(httpd_port(h)), b = dial_ok(httpd_port(h)), c;
	struct timeval short_wait = { 0, 500 * 1000 };
	char buf[1024];
	int64_t t0;

	/* two clients that never read their big answers keep both slots writing */
	ck_assert(send_all(a, REQ("GET /big HTTP/1.1\r\n\r\n")));
	ck_assert(send_all(b, REQ("GET /big HTTP/1.1\r\n\r\n")));
	sleep_ms(200);
	c = dial_ok(httpd_port(h));
	ck_assert(send_all(c, REQ("GET /hello HTTP/1.1\r\n\r\n")));
	/* no 503 that a probe would take for "not live", no close: it waits */
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &short_wait, sizeof(short_wait));
	ck_assert_int_eq(recv(c, buf, sizeof(buf), 0), -1);
	ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "%s", strerror(errno));
	ck_assert_int_eq(atomic_load(&handler_calls), 2);
	/* and is answered as soon as a slot frees */
	t0 = util_mono_ms();
	close(a);
	short_wait.tv_usec = 0;
	short_wait.tv_sec = 5;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &short_wait, sizeof(short_wait));
	read_all(c, buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ck_assert_int_lt(since(t0), SLOW_MS / 2);
	close(b);
	close(c);
	httpd_stop(h);
}
END_TEST

START_TEST(test_start_reports_a_port_in_use)
{
	struct httpd *h = start(0, 0);
	struct httpd_options opt = { NULL, 0, 0 };
	char listen[64], err[256], want[256];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", httpd_port(h));
	opt.listen = listen;
	ck_assert_ptr_null(httpd_start(&opt, test_handler, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%d: Address already in use",
	         httpd_port(h));
	ck_assert_str_eq(err, want);
	httpd_stop(h);
}
END_TEST

START_TEST(test_start_rejects_malformed_listen_addresses)
{
	static const char *const bad[] = { "8080",  "localhost", "::1:8080",   "[::1]8080",
		                           "[]:80", "host:",     "host:65536", "host:8o" };
	struct httpd_options opt = { NULL, 0, 0 };
	char err[256];

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		opt.listen = bad[k];
		err[0] = '\0';
		ck_assert_ptr_null(httpd_start(&opt, test_handler, NULL, err, sizeof(err)));
		ck_assert_msg(strncmp(err, "cannot listen on ", 17) == 0 &&
		                  strstr(err, bad[k]) != NULL,
		              "%s: %s", bad[k], err);
	}
}
END_TEST

START_TEST(test_wildcard_listen_answers_on_loopback)
{
	static const char *const any[] = { ":0", "*:0" };

	for (size_t k = 0; k < sizeof(any) / sizeof(any[0]); k++) {
		struct httpd_options opt = { any[k], 0, 0 };
		char err[256];
		struct httpd *h = httpd_start(&opt, test_handler, NULL, err, sizeof(err));

		ck_assert_msg(h != NULL, "%s: %s", any[k], err);
		timed_hello(httpd_port(h));
		httpd_stop(h);
	}
}
END_TEST

START_TEST(test_stop_with_clients_connected)
{
	struct httpd *h = start(0, SLOW_MS);
	int silent = dial_ok(httpd_port(h)), half = dial_ok(httpd_port(h));
	int lingering = dial_ok(httpd_port(h));
	int64_t t0;
	char buf[1024];

	ck_assert(send_all(half, REQ("GET /hello HTTP/1.1\r\n")));
	/* answered, but never closed by the client: the server lingers */
	ck_assert(send_all(lingering, REQ("GET /hello HTTP/1.1\r\n\r\n")));
	sleep_ms(100);
	t0 = util_mono_ms();
	httpd_stop(h);
	ck_assert_int_lt(since(t0), 1000);
	/* every socket was closed: each client sees the end at once */
	read_all(silent, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	read_all(half, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	read_all(lingering, buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ck_assert_int_lt(since(t0), 1000);
	close(silent);
	close(half);
	close(lingering);
}
END_TEST

START_TEST(test_stop_takes_null)
{
	httpd_stop(NULL);
}
END_TEST

Suite *httpd_suite(void)
{
	Suite *s = suite_create("httpd");
	TCase *p = tcase_create("parse"), *srv = tcase_create("server");

	tcase_add_test(p, test_parse_get_fills_the_request);
	tcase_add_test(p, test_parse_head_is_head);
	tcase_add_test(p, test_parse_splits_the_query);
	tcase_add_test(p, test_parse_http10_without_host);
	tcase_add_test(p, test_parse_accepts_bare_lf_and_leading_empty_lines);
	tcase_add_test(p, test_parse_reduces_absolute_form_to_its_path);
	tcase_add_test(p, test_parse_leaves_the_body_out_of_the_head);
	tcase_add_test(p, test_parse_every_prefix_is_incomplete);
	tcase_add_loop_test(p, test_parse_rejects_bad_request_lines, 0,
	                    (int)(sizeof(bad_heads) / sizeof(bad_heads[0])));
	tcase_add_test(p, test_parse_rejects_control_characters);
	tcase_add_test(p, test_parse_target_over_1023_bytes_is_414);
	tcase_add_test(p, test_parse_head_over_8k_is_431);
	tcase_add_test(p, test_parse_other_versions_are_505);
	tcase_add_test(p, test_parse_other_methods_are_other);
	suite_add_tcase(s, p);

	/* real sockets and short timeouts: slow under valgrind */
	tcase_set_timeout(srv, 60);
	tcase_add_test(srv, test_get_answers_exact_bytes);
	tcase_add_test(srv, test_head_answers_headers_only);
	tcase_add_test(srv, test_http10_get_is_answered);
	tcase_add_test(srv, test_unknown_path_gets_the_handlers_404);
	tcase_add_test(srv, test_handler_without_status_gets_500);
	tcase_add_test(srv, test_request_body_is_ignored);
	tcase_add_test(srv, test_other_method_gets_405_with_allow);
	tcase_add_test(srv, test_malformed_request_gets_400);
	tcase_add_test(srv, test_9k_head_gets_431);
	tcase_add_test(srv, test_long_target_gets_414);
	tcase_add_test(srv, test_http2_gets_505);
	tcase_add_test(srv, test_silent_client_gets_408);
	tcase_add_test(srv, test_trickling_client_gets_408_on_time);
	tcase_add_test(srv, test_silent_client_does_not_block_others);
	tcase_add_test(srv, test_flood_clients_do_not_block_others);
	tcase_add_test(srv, test_idle_clients_over_the_cap_make_way_for_a_request);
	tcase_add_test(srv, test_over_the_cap_while_answering_waits_for_a_slot);
	tcase_add_test(srv, test_start_reports_a_port_in_use);
	tcase_add_test(srv, test_start_rejects_malformed_listen_addresses);
	tcase_add_test(srv, test_wildcard_listen_answers_on_loopback);
	tcase_add_test(srv, test_stop_with_clients_connected);
	tcase_add_test(srv, test_stop_takes_null);
	suite_add_tcase(s, srv);
	return s;
}
