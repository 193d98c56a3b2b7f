/* transport_http.c -- the relay's HTTP transport: signed POSTs with the libcurl multi interface. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "netaddr.h"
#include "sign.h"
#include "util.h"

/* For this long after block_private_networks is turned on every transfer
 * opens a new connection; later ones may reuse only connections younger
 * than the time since (CURLOPT_MAXLIFETIME_CONN counts whole seconds, and
 * needs at least 1: hence 2 s). */
#define FRESH_AFTER_BLOCK_MS 2000

struct http_transport {
	CURLM *multi;
	const struct relay_config *rc; /* the core's, see configure() */
	/* block_private_networks is vetted when a connection opens; after a
	 * SIGHUP turns it on, connections opened before must never be reused. */
	bool blocking;
	int64_t block_since_ms; /* monotonic; 0 = on since start (or off) */
};

struct http_transfer {
	struct http_transport *tp;
	CURL *easy;
	struct curl_slist *headers;
	char *body; /* owned copy: byte-identical on every attempt */
	char id[40];
	struct transport_result *res; /* the caller's */
	void *owner;
	size_t response_total; /* bytes read */
	size_t response_max;
	bool blocked;   /* refused by relay.block_private_networks */
	bool truncated; /* cut at relay.max_response_bytes */
	char curl_error[CURL_ERROR_SIZE];
};

/* curl resolves the name, then asks us for the socket of the address it
 * will connect to: vetting it here pins the vetted address. */
static curl_socket_t open_vetted_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct http_transfer *t = arg;

	if (purpose == CURLSOCKTYPE_IPCXN && netaddr_blocked(&a->addr)) {
		t->blocked = true;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- one transfer ---------------------------------------------------------- */

static size_t on_response_body(char *data, size_t size, size_t n, void *arg)
{
	struct http_transfer *t = arg;
	struct transport_result *res = t->res;
	size_t len = size * n;

	if (res->response_len < TRANSPORT_RESPONSE_KEEP) {
		size_t keep = TRANSPORT_RESPONSE_KEEP - res->response_len;

		keep = len < keep ? len : keep;
		memcpy(res->response + res->response_len, data, keep);
		res->response_len += keep;
	}
	t->response_total += len;
	if (t->response_total > t->response_max) {
		t->truncated = true;
		return 0; /* enough: the status is what counts; curl ends the transfer */
	}
	return len;
}

static void transfer_free(struct http_transfer *t)
{
	if (!t)
		return;
	if (t->easy) {
		curl_multi_remove_handle(t->tp->multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	curl_slist_free_all(t->headers);
	free(t->body);
	free(t);
}

static bool add_header(struct http_transfer *t, const char *name, const char *value)
{
	char *line;
	struct curl_slist *l;

	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return false;
	if (asprintf(&line, "%s: %s", name, value) < 0)
		return false;
	l = curl_slist_append(t->headers, line);
	free(line);
	if (!l)
		return false;
	t->headers = l;
	return true;
}

static const char *or_default(const char *value, const char *def)
{
	return value && value[0] ? value : def;
}

/* Headers: the signature scheme's three (or the subscription's names for
 * them), then the subscription's extra headers. */
static bool build_headers(struct http_transfer *t, const struct transport_message *m, char *err,
                          size_t errlen)
{
	enum sign_scheme scheme;
	const char *id_h, *ts_h, *sig_h;
	char ts[32], serr[256];
	char *sig;
	long long now = (long long)time(NULL);
	json_t *extra;
	const char *k;
	json_t *v;

	if (!sign_scheme_parse(m->scheme, &scheme)) {
		snprintf(err, errlen, "unknown signature scheme %s", m->scheme);
		return false;
	}
	switch (scheme) {
	case SIGN_STANDARD:
		id_h = "webhook-id", ts_h = "webhook-timestamp", sig_h = "webhook-signature";
		break;
	case SIGN_TIMESTAMPED_HEX:
		id_h = "X-Delivery-Id", ts_h = "X-Delivery-Timestamp", sig_h = "X-Signature";
		break;
	default:
		id_h = "X-Webhook-Id", ts_h = "X-Webhook-Timestamp", sig_h = "X-Webhook-Signature";
		break;
	}
	id_h = or_default(m->id_header, id_h);
	ts_h = or_default(m->timestamp_header, ts_h);
	sig_h = or_default(m->signature_header, sig_h);
	snprintf(ts, sizeof(ts), "%lld", now);
	sig = sign_header_value(scheme, m->secret, t->id, now, t->body, strlen(t->body), serr,
	                        sizeof(serr));
	if (!sig) {
		snprintf(err, errlen, "cannot sign: %s", serr);
		return false;
	}
	bool ok = add_header(t, "Content-Type", "application/json") && add_header(t, id_h, t->id) &&
	          add_header(t, ts_h, ts) && add_header(t, sig_h, sig);
	free(sig);
	/* no "Expect: 100-continue" round trip */
	struct curl_slist *l = ok ? curl_slist_append(t->headers, "Expect:") : NULL;
	if (!l) {
		snprintf(err, errlen, "bad header name or value, or out of memory");
		return false;
	}
	t->headers = l;
	extra = json_loads(m->headers, 0, NULL);
	json_object_foreach(extra, k, v)
	{
		if (!json_is_string(v) || !add_header(t, k, json_string_value(v))) {
			snprintf(err, errlen, "bad extra header %s", k);
			json_decref(extra);
			return false;
		}
	}
	json_decref(extra);
	return true;
}

static void set_transfer_options(struct http_transfer *t, const struct transport_message *m)
{
	struct http_transport *tp = t->tp;
	const struct relay_config *rc = tp->rc;
	CURL *e = t->easy;

	curl_easy_setopt(e, CURLOPT_URL, m->target);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(t->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pgeventd/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)rc->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, m->timeout_ms);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (rc->ca_file && rc->ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, rc->ca_file);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->curl_error);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	if (rc->block_private_networks) {
		int64_t since = util_mono_ms() - tp->block_since_ms;

		if (tp->block_since_ms && since < FRESH_AFTER_BLOCK_MS)
			curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		else if (tp->block_since_ms)
			/* curl drops a connection when its age in whole seconds
			 * exceeds this; one opened before the change is older than
			 * `since`, so one second less always excludes it. */
			curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, (long)(since / 1000 - 1));
		curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_vetted_socket);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
		/* a proxy from the environment would be the address vetted */
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	}
}

static void *http_send(void *arg, const struct transport_message *m, struct transport_result *res,
                       void *owner, char *err, size_t errlen)
{
	struct http_transport *tp = arg;
	struct http_transfer *t = calloc(1, sizeof(*t));

	if (!t || !(t->body = util_strdup(m->body))) {
		free(t);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->tp = tp;
	t->res = res;
	t->owner = owner;
	snprintf(t->id, sizeof(t->id), "%s", m->id);
	t->response_max = (size_t)tp->rc->max_response_bytes;
	if (!build_headers(t, m, err, errlen))
		goto fail;
	t->easy = curl_easy_init();
	if (!t->easy) {
		snprintf(err, errlen, "curl_easy_init failed");
		goto fail;
	}
	set_transfer_options(t, m);
	if (curl_multi_add_handle(tp->multi, t->easy) != CURLM_OK) {
		snprintf(err, errlen, "curl_multi_add_handle failed");
		goto fail;
	}
	return t;
fail:
	if (t->easy) {
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	transfer_free(t);
	return NULL;
}

/* ---- the outcome ------------------------------------------------------------- */

/* libcurl reports 0 both for "no usable Retry-After" and for one that
 * asks for no wait at all ("0", or an HTTP-date already past): tell the
 * second apart, which means "retry now", by the header itself. */
static bool retry_after_is_now(CURL *easy)
{
	struct curl_header *h;
	const char *v;

	if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return false;
	v = h->value;
	if (*v && strspn(v, "0123456789") == strlen(v))
		return true;                /* delta-seconds: libcurl gave 0, so it is 0 */
	return curl_getdate(v, NULL) != -1; /* a date libcurl read, in the past */
}

/* Turn a finished transfer into its result. */
static void judge_transfer_result(struct http_transfer *t, CURLcode cc)
{
	struct transport_result *res = t->res;
	enum webhook_verdict v;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res->status);
	/* Blocked only if no address was left to try: curl falls back to the
	 * next address of a name, which may be a public one that answered. */
	if (t->blocked && cc == CURLE_COULDNT_CONNECT) {
		snprintf(res->error, sizeof(res->error),
		         "refused: the address is loopback, private or link-local "
		         "(relay.block_private_networks)");
		v = WEBHOOK_FAIL;
	} else if (cc != CURLE_OK && !(t->truncated && res->status > 0)) {
		snprintf(res->error, sizeof(res->error), "%s",
		         t->curl_error[0] ? t->curl_error : curl_easy_strerror(cc));
		v = webhook_classify(false, 0);
		res->status = 0;
	} else {
		v = webhook_classify(true, res->status);
		if (v != WEBHOOK_DELIVERED)
			snprintf(res->error, sizeof(res->error), "HTTP %ld%s", res->status,
			         res->status >= 300 && res->status < 400
			             ? " (redirects are not followed)"
			             : "");
	}
	res->retry_after_ms = -1;
	if (v == WEBHOOK_RETRY && (res->status == 429 || res->status == 503)) {
		curl_off_t secs = 0;

		/* libcurl reads Retry-After, delta-seconds or an HTTP-date */
		if (curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &secs) == CURLE_OK)
			res->retry_after_ms =
			    webhook_retry_after_ms((long long)secs, t->tp->rc->retry_after_max_ms);
		if (secs == 0 && retry_after_is_now(t->easy))
			res->retry_after_ms = 0;
	}
	res->verdict = v;
}

static void http_progress(void *arg, transport_done_fn *done, void *done_arg)
{
	struct http_transport *tp = arg;
	CURLMsg *msg;
	int running, left;

	curl_multi_perform(tp->multi, &running);
	while ((msg = curl_multi_info_read(tp->multi, &left))) {
		char *priv = NULL;
		struct http_transfer *t;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		t = (struct http_transfer *)(void *)priv;
		judge_transfer_result(t, msg->data.result);
		done(done_arg, t->owner);
		transfer_free(t);
	}
}

static void http_cancel(void *arg, void *handle)
{
	(void)arg;
	transfer_free(handle);
}

static void http_wait(void *arg, struct transport_waitfd *fds, unsigned nfds, int timeout_ms)
{
	struct http_transport *tp = arg;
	struct curl_waitfd cfds[nfds > 0 ? nfds : 1];

	for (unsigned i = 0; i < nfds; i++)
		cfds[i] = (struct curl_waitfd){
			fds[i].fd,
			(short)(((fds[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0) |
			        ((fds[i].events & POLLPRI) ? CURL_WAIT_POLLPRI : 0) |
			        ((fds[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0)),
			0
		};
	curl_multi_poll(tp->multi, cfds, nfds, timeout_ms, NULL);
	for (unsigned i = 0; i < nfds; i++)
		fds[i].revents = (short)(((cfds[i].revents & CURL_WAIT_POLLIN) ? POLLIN : 0) |
		                         ((cfds[i].revents & CURL_WAIT_POLLPRI) ? POLLPRI : 0) |
		                         ((cfds[i].revents & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
}

/* ---- the transport ------------------------------------------------------------- */

static bool http_serves(const char *target)
{
	return strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0;
}

static void http_configure(void *arg, const struct relay_config *rc)
{
	struct http_transport *tp = arg;

	if (rc->block_private_networks && !tp->blocking)
		tp->block_since_ms = util_mono_ms();
	else if (!rc->block_private_networks)
		tp->block_since_ms = 0;
	tp->blocking = rc->block_private_networks;
	tp->rc = rc;
}

static void *http_open(const struct relay_config *rc, int slots)
{
	struct http_transport *tp = calloc(1, sizeof(*tp));

	if (!tp)
		return NULL;
	tp->multi = curl_multi_init();
	if (!tp->multi) {
		free(tp);
		return NULL;
	}
	curl_multi_setopt(tp->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)slots);
	tp->rc = rc;
	tp->blocking = rc->block_private_networks;
	return tp;
}

static void http_close(void *arg)
{
	struct http_transport *tp = arg;

	if (!tp)
		return;
	curl_multi_cleanup(tp->multi);
	free(tp);
}

const struct transport_ops transport_http = {
	.name = "http",
	.serves = http_serves,
	.open = http_open,
	.close = http_close,
	.configure = http_configure,
	.send = http_send,
	.cancel = http_cancel,
	.progress = http_progress,
	.wait = http_wait,
	.waitfds = NULL,
};
