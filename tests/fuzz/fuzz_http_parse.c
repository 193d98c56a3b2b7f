/* fuzz_http_parse.c -- libFuzzer target: http_parse_request on any bytes keeps its promises. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() even with NDEBUG, saying which promise broke. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void check_ok(const uint8_t *data, size_t size, const struct http_request *req)
{
	size_t plen, qlen;

	CHECK(req->head_len > 0 && req->head_len <= size && req->head_len <= HTTP_MAX_HEAD);
	CHECK(data[req->head_len - 1] == '\n');
	CHECK(memchr(req->path, '\0', sizeof(req->path)) != NULL);
	CHECK(memchr(req->query, '\0', sizeof(req->query)) != NULL);
	plen = strlen(req->path);
	qlen = strlen(req->query);
	CHECK(req->path[0] == '/' || strcmp(req->path, "*") == 0);
	CHECK(strcmp(req->path, "*") != 0 || req->method == HTTP_METHOD_OTHER);
	CHECK(plen + qlen <= 1023);
	CHECK(req->version_minor == 0 || req->version_minor == 1);
	CHECK(req->method == HTTP_METHOD_GET || req->method == HTTP_METHOD_HEAD ||
	      req->method == HTTP_METHOD_OTHER);
	for (size_t k = 0; k < plen; k++)
		CHECK(req->path[k] > 0x20 && req->path[k] < 0x7f && req->path[k] != '?');
	for (size_t k = 0; k < qlen; k++)
		CHECK(req->query[k] > 0x20 && req->query[k] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req, again;
	enum http_parse r, rp;

	/* garbage in the output struct must never leak out as a string */
	memset(&req, 0xa5, sizeof(req));
	r = http_parse_request((const char *)data, size, &req);
	CHECK(r >= HTTP_PARSE_OK && r <= HTTP_PARSE_VERSION);
	CHECK(r != HTTP_PARSE_INCOMPLETE || size < HTTP_MAX_HEAD);
	CHECK(r != HTTP_PARSE_TOO_LARGE || size >= HTTP_MAX_HEAD);
	if (r == HTTP_PARSE_OK) {
		check_ok(data, size, &req);
		/* the head alone parses the same; one byte less is incomplete */
		memset(&again, 0x5a, sizeof(again));
		CHECK(http_parse_request((const char *)data, req.head_len, &again) ==
		      HTTP_PARSE_OK);
		CHECK(again.head_len == req.head_len && again.method == req.method &&
		      again.version_minor == req.version_minor);
		CHECK(strcmp(again.path, req.path) == 0 && strcmp(again.query, req.query) == 0);
		CHECK(http_parse_request((const char *)data, req.head_len - 1, &again) ==
		      HTTP_PARSE_INCOMPLETE);
	}
	/* a verdict never changes as bytes arrive: whatever the prefix one
	 * byte shorter decided, the whole input decides the same */
	if (size > 0) {
		rp = http_parse_request((const char *)data, size - 1, &again);
		CHECK(rp == HTTP_PARSE_INCOMPLETE || rp == r);
	}
	return 0;
}
