/* relay.c -- the delivery thread (see relay.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "backoff.h"
#include "db.h"
#include "log.h"
#include "sign.h"
#include "telemetry.h"
#include "util.h"
#include "webhook.h"

#define ERRLEN          512
#define RESPONSE_KEEP   4096 /* bytes of a response body kept in delivery_attempts */
#define RECLAIM_EVERY_S 5.0
/* For this long after block_private_networks is turned on every transfer
 * opens a new connection; later ones may reuse only connections younger
 * than the time since (CURLOPT_MAXLIFETIME_CONN counts whole seconds, and
 * needs at least 1: hence 2 s). */
#define FRESH_AFTER_BLOCK_MS 2000

enum {
	D_ID,
	D_ATTEMPT,
	D_BODY,
	D_SUB_ID,
	D_SUB_NAME,
	D_URL,
	D_SECRET,
	D_SCHEME,
	D_ID_HEADER,
	D_TS_HEADER,
	D_SIG_HEADER,
	D_HEADERS,
	D_TIMEOUT_MS,
	D_LEASE,
};

/* $1 how many, $2 lease margin in ms (added to the subscription's timeout) */
static const char claim_sql[] =
    "WITH c AS (SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
    "  WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND s.enabled"
    "    AND (s.paused_until IS NULL OR s.paused_until <= now())"
    "  ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE deliveries d SET status = 'in_flight', attempt = d.attempt + 1,"
    "  lease = nextval('deliveries_lease_seq'),"
    "  locked_until = now() + (s.timeout_ms + $2::int) * interval '1 millisecond'"
    " FROM c, subscriptions s WHERE d.id = c.id AND s.id = d.subscription_id"
    " RETURNING d.id, d.attempt, d.body, s.id, s.name, s.url, s.secret, s.signature_scheme,"
    "  s.id_header, s.timestamp_header, s.signature_header, s.headers::text, s.timeout_ms,"
    "  d.lease";

/* Leases that ran out (a process died, or lost its database, mid-request):
 * back to pending. The lost attempt stays counted, and its late result,
 * if any, no longer matches. */
static const char reclaim_sql[] =
    "UPDATE deliveries d SET status = CASE WHEN d.attempt >= s.max_attempts THEN 'dead'"
    "  ELSE 'pending' END,"
    " locked_until = NULL, next_attempt_at = now(),"
    " finished_at = CASE WHEN d.attempt >= s.max_attempts THEN now() END,"
    " last_error = CASE WHEN d.attempt >= s.max_attempts"
    "  THEN 'gave up after ' || d.attempt || ' attempts: the last did not report back'"
    "  ELSE 'lease expired: the attempt did not report back' END"
    " FROM subscriptions s WHERE s.id = d.subscription_id"
    "  AND d.status = 'in_flight' AND d.locked_until < now()";

static const char finish_sql[] =
    "SELECT pgeventd_finish_delivery($1, $13::bigint, $2::int, $3, $4::int, $5, $6,"
    " to_timestamp($7::float8), $8::float8, $9::bigint, $10::int, $11::bigint, $12::bigint)";

/* Shutdown: requests not sent or not finished go back, attempt uncounted. */
static const char release_sql[] =
    "UPDATE deliveries SET status = 'pending', attempt = attempt - 1, locked_until = NULL,"
    " next_attempt_at = now() WHERE id = $1 AND lease = $2::bigint AND status = 'in_flight'";

struct transfer {
	CURL *easy;
	struct curl_slist *headers;
	char *body; /* owned copy: byte-identical on every attempt */
	char id[40];
	char lease[24];
	int attempt;
	char sub_name[128];
	double started_real, started_mono;
	char response[RESPONSE_KEEP + 1];
	size_t response_len;   /* kept */
	size_t response_total; /* read */
	size_t response_max;
	char retry_after[64];
	bool blocked;   /* refused by relay.block_private_networks */
	bool truncated; /* cut at relay.max_response_bytes */
	char curl_error[CURL_ERROR_SIZE];
	struct relay *r;
	/* the result, once finished (judge, write_results, report) */
	enum webhook_verdict verdict;
	const char *outcome;
	long status;
	long long retry_ms;
	double duration_ms;
	char error[ERRLEN];
	char s_attempt[16], s_status[16], s_started[32], s_duration[32], s_retry[32];
	bool written, applied;
	char dberr[ERRLEN];
};

struct relay {
	const struct config *cfg; /* this turn's: a reference from runtime_config_refresh */
	struct runtime *rt;
	pthread_t thread;
	struct relay_state st;
	PGconn *conn;
	CURLM *multi;
	struct transfer **transfers; /* in flight, relay.concurrency slots */
	int ntransfers;
	int64_t next_claim_ms;   /* monotonic */
	bool notified;           /* a NOTIFY came that no claim has served yet */
	bool more;               /* the last claim filled every free slot: more may be due */
	int64_t reconnect_at_ms; /* monotonic */
	int reconnect_delay_ms;
	/* block_private_networks is vetted when a connection opens; after a
	 * SIGHUP turns it on, connections opened before must never be reused. */
	bool blocking;
	int64_t block_since_ms; /* monotonic; 0 = on since start (or off) */
	double last_reclaim;
};

/* ---- addresses ------------------------------------------------------------ */

static bool v4_blocked(uint32_t a)
{
	return (a >> 24) == 0 ||                /* 0.0.0.0/8 */
	       (a >> 24) == 10 ||               /* 10/8 */
	       (a >> 24) == 127 ||              /* loopback */
	       (a >> 22) == (100 << 2 | 1) ||   /* 100.64/10 carrier-grade NAT */
	       (a >> 16) == (169 << 8 | 254) || /* link-local, cloud metadata */
	       (a >> 20) == (172 << 4 | 1) ||   /* 172.16/12 */
	       (a >> 16) == (192 << 8 | 168) || /* 192.168/16 */
	       (a >> 28) >= 14;                 /* multicast, reserved, broadcast */
}

bool relay_address_blocked(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return v4_blocked(
		    ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		const uint8_t *b = a->s6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a))
			return v4_blocked((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
			                  (uint32_t)b[14] << 8 | b[15]);
		return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
		       IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_MULTICAST(a) ||
		       (b[0] & 0xfe) == 0xfc; /* fc00::/7 unique local */
	}
	return true; /* not an internet address at all */
}

/* curl resolves the name, then asks us for the socket of the address it
 * will connect to: vetting it here pins the vetted address. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct transfer *t = arg;

	if (purpose == CURLSOCKTYPE_IPCXN && relay_address_blocked(&a->addr)) {
		t->blocked = true;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- one transfer ---------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n;

	if (t->response_len < RESPONSE_KEEP) {
		size_t keep = RESPONSE_KEEP - t->response_len;

		keep = len < keep ? len : keep;
		memcpy(t->response + t->response_len, data, keep);
		t->response_len += keep;
	}
	t->response_total += len;
	if (t->response_total > t->response_max) {
		t->truncated = true;
		return 0; /* enough: the status is what counts; curl ends the transfer */
	}
	return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct transfer *t = arg;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		size_t v = sizeof(name) - 1, end = len;

		while (v < end && (data[v] == ' ' || data[v] == '\t'))
			v++;
		while (end > v &&
		       (data[end - 1] == '\r' || data[end - 1] == '\n' || data[end - 1] == ' '))
			end--;
		snprintf(t->retry_after, sizeof(t->retry_after), "%.*s", (int)(end - v), data + v);
	}
	return len;
}

static void transfer_free(struct transfer *t)
{
	if (!t)
		return;
	if (t->easy) {
		curl_multi_remove_handle(t->r->multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	curl_slist_free_all(t->headers);
	free(t->body);
	free(t);
}

static bool add_header(struct transfer *t, const char *name, const char *value)
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

static const char *or_default(const PGresult *res, int row, int col, const char *def)
{
	return PQgetisnull(res, row, col) || !PQgetvalue(res, row, col)[0]
	           ? def
	           : PQgetvalue(res, row, col);
}

/* Headers: the signature scheme's three (or the subscription's names for
 * them), then the subscription's extra headers. */
static bool build_headers(struct transfer *t, const PGresult *res, int row, char *err)
{
	enum sign_scheme scheme;
	const char *id_h, *ts_h, *sig_h;
	char ts[32], serr[256];
	char *sig;
	long long now = (long long)time(NULL);
	json_t *extra;
	const char *k;
	json_t *v;

	if (!sign_scheme_parse(PQgetvalue(res, row, D_SCHEME), &scheme)) {
		snprintf(err, ERRLEN, "unknown signature scheme %s",
		         PQgetvalue(res, row, D_SCHEME));
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
	id_h = or_default(res, row, D_ID_HEADER, id_h);
	ts_h = or_default(res, row, D_TS_HEADER, ts_h);
	sig_h = or_default(res, row, D_SIG_HEADER, sig_h);
	snprintf(ts, sizeof(ts), "%lld", now);
	sig = sign_header_value(scheme, PQgetvalue(res, row, D_SECRET), t->id, now, t->body,
	                        strlen(t->body), serr, sizeof(serr));
	if (!sig) {
		snprintf(err, ERRLEN, "cannot sign: %s", serr);
		return false;
	}
	bool ok = add_header(t, "Content-Type", "application/json") && add_header(t, id_h, t->id) &&
	          add_header(t, ts_h, ts) && add_header(t, sig_h, sig);
	free(sig);
	/* no "Expect: 100-continue" round trip */
	struct curl_slist *l = ok ? curl_slist_append(t->headers, "Expect:") : NULL;
	if (!l) {
		snprintf(err, ERRLEN, "bad header name or value, or out of memory");
		return false;
	}
	t->headers = l;
	extra = json_loads(PQgetvalue(res, row, D_HEADERS), 0, NULL);
	json_object_foreach(extra, k, v)
	{
		if (!json_is_string(v) || !add_header(t, k, json_string_value(v))) {
			snprintf(err, ERRLEN, "bad extra header %s", k);
			json_decref(extra);
			return false;
		}
	}
	json_decref(extra);
	return true;
}

static struct transfer *transfer_new(struct relay *r, const PGresult *res, int row, char *err)
{
	const struct relay_config *rc = &r->cfg->relay;
	struct transfer *t = calloc(1, sizeof(*t));
	CURL *e;

	if (!t || !(t->body = strdup(PQgetvalue(res, row, D_BODY)))) {
		free(t);
		snprintf(err, ERRLEN, "out of memory");
		return NULL;
	}
	t->r = r;
	snprintf(t->id, sizeof(t->id), "%s", PQgetvalue(res, row, D_ID));
	snprintf(t->sub_name, sizeof(t->sub_name), "%s", PQgetvalue(res, row, D_SUB_NAME));
	t->attempt = atoi(PQgetvalue(res, row, D_ATTEMPT));
	snprintf(t->lease, sizeof(t->lease), "%s", PQgetvalue(res, row, D_LEASE));
	t->response_max = (size_t)rc->max_response_bytes;
	if (!build_headers(t, res, row, err))
		goto fail;
	e = t->easy = curl_easy_init();
	if (!e) {
		snprintf(err, ERRLEN, "curl_easy_init failed");
		goto fail;
	}
	curl_easy_setopt(e, CURLOPT_URL, PQgetvalue(res, row, D_URL));
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(t->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pgeventd/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)rc->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, atol(PQgetvalue(res, row, D_TIMEOUT_MS)));
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (rc->ca_file && rc->ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, rc->ca_file);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->curl_error);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	if (rc->block_private_networks) {
		int64_t since = util_mono_ms() - r->block_since_ms;

		if (r->block_since_ms && since < FRESH_AFTER_BLOCK_MS)
			curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		else if (r->block_since_ms)
			/* curl drops a connection when its age in whole seconds
			 * exceeds this; one opened before the change is older than
			 * `since`, so one second less always excludes it. */
			curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, (long)(since / 1000 - 1));
		curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
		curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
		/* a proxy from the environment would be the address vetted */
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	}
	t->started_real = util_real_s();
	t->started_mono = util_mono_s();
	if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
		snprintf(err, ERRLEN, "curl_multi_add_handle failed");
		goto fail;
	}
	return t;
fail:
	if (t->easy) {
		curl_easy_cleanup(t->easy);
		t->easy = NULL;
	}
	curl_slist_free_all(t->headers);
	free(t->body);
	free(t);
	return NULL;
}

/* PostgreSQL text must be valid UTF-8 without NUL: replace what is not. */
static void make_text(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80         ? 1
		           : (c >> 5) == 6  ? 2
		           : (c >> 4) == 14 ? 3
		           : (c >> 3) == 30 ? 4
		                            : 0;
		bool ok = n > 0 && c != 0 && i + n <= len;

		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)s[i + k] >> 6) == 2;
		if (!ok) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
	s[len] = '\0';
}

/* ---- database ----------------------------------------------------------------- */

static bool prepare(PGconn *conn, const char *name, const char *sql, int n, char *err)
{
	PGresult *res = PQprepare(conn, name, sql, n, NULL);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, ERRLEN);

	PQclear(res);
	return ok;
}

/* Guards last_error of every relay_state; never destroyed. */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

/* A claim or a connection failed: no progress (no heartbeat) until a claim
 * works again. /health shows `err` up to its DETAIL, which may quote rows. */
static void set_failing(struct relay *r, const char *err)
{
	char *detail;

	pthread_mutex_lock(&error_lock);
	snprintf(r->st.last_error, sizeof(r->st.last_error), "%s", err);
	detail = strstr(r->st.last_error, " DETAIL: ");
	if (detail)
		*detail = '\0';
	pthread_mutex_unlock(&error_lock);
	atomic_store(&r->st.failing, 1);
}

void relay_last_error(const struct relay_state *st, char *buf, size_t len)
{
	pthread_mutex_lock(&error_lock);
	snprintf(buf, len, "%s", atomic_load(&st->failing) ? st->last_error : "");
	pthread_mutex_unlock(&error_lock);
}

static void disconnect(struct relay *r)
{
	PQfinish(r->conn);
	r->conn = NULL;
	atomic_store(&r->st.connected, 0);
}

static bool connect_db(struct relay *r)
{
	char err[ERRLEN];

	r->conn = db_connect(conf_conninfo(r->cfg), "pgeventd relay", err, sizeof(err));
	if (!r->conn)
		goto fail;
	if ((r->cfg->listen && !db_exec(r->conn, "LISTEN pgeventd_deliveries", err, sizeof(err))) ||
	    !prepare(r->conn, "claim", claim_sql, 2, err) ||
	    !prepare(r->conn, "reclaim", reclaim_sql, 0, err) ||
	    !prepare(r->conn, "finish", finish_sql, 13, err) ||
	    !prepare(r->conn, "release", release_sql, 2, err))
		goto fail;
	atomic_store(&r->st.connected, 1);
	r->reconnect_delay_ms = 100;
	return true;
fail:
	log_kv(LOG_WARNING, "relay: database connection failed", "error", err, NULL);
	set_failing(r, err);
	disconnect(r);
	r->reconnect_at_ms = util_mono_ms() + r->reconnect_delay_ms;
	r->reconnect_delay_ms =
	    r->reconnect_delay_ms * 2 > 30000 ? 30000 : r->reconnect_delay_ms * 2;
	return false;
}

/* The delay after failed attempt n: relay.backoff.schedule_ms when set
 * (its last entry repeating), else base/factor/cap; then +-jitter. */
static long long retry_delay_ms(const struct relay_config *rc, int attempt)
{
	const struct intlist *l = &rc->schedule_ms;

	if (l->n == 0)
		return backoff_delay_ms(&rc->backoff, attempt, backoff_random());
	double base = (double)l->v[(attempt < 1 ? 1 : attempt > l->n ? l->n : attempt) - 1];
	double d = base * (1.0 + rc->backoff.jitter * (2.0 * backoff_random() - 1.0));

	return d < 0 ? 0 : (long long)d;
}

/* Turn a finished transfer into its result and the finish parameters. */
static void judge(struct relay *r, struct transfer *t, CURLcode cc)
{
	const struct relay_config *rc = &r->cfg->relay;
	enum webhook_verdict v;

	t->duration_ms = (util_mono_s() - t->started_mono) * 1000.0;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
	/* Blocked only if no address was left to try: curl falls back to the
	 * next address of a name, which may be a public one that answered. */
	if (t->blocked && cc == CURLE_COULDNT_CONNECT) {
		snprintf(t->error, sizeof(t->error),
		         "refused: the address is loopback, private or link-local "
		         "(relay.block_private_networks)");
		v = WEBHOOK_FAIL;
	} else if (cc != CURLE_OK && !(t->truncated && t->status > 0)) {
		snprintf(t->error, sizeof(t->error), "%s",
		         t->curl_error[0] ? t->curl_error : curl_easy_strerror(cc));
		v = webhook_classify(false, 0);
		t->status = 0;
	} else {
		v = webhook_classify(true, t->status);
		if (v != WEBHOOK_DELIVERED)
			snprintf(t->error, sizeof(t->error), "HTTP %ld%s", t->status,
			         t->status >= 300 && t->status < 400
			             ? " (redirects are not followed)"
			             : "");
	}
	t->retry_ms = 0;
	if (v == WEBHOOK_RETRY) {
		long long ra = -1;

		if ((t->status == 429 || t->status == 503) && t->retry_after[0])
			ra = webhook_retry_after_ms(t->retry_after, time(NULL),
			                            rc->retry_after_max_ms);
		t->retry_ms = ra >= 0 ? ra : retry_delay_ms(rc, t->attempt);
	}
	t->verdict = v;
	t->outcome = webhook_verdict_name(v); /* delivered, retry, failed, gone */
	make_text(t->response, t->response_len);
	snprintf(t->s_attempt, sizeof(t->s_attempt), "%d", t->attempt);
	snprintf(t->s_status, sizeof(t->s_status), "%ld", t->status);
	snprintf(t->s_started, sizeof(t->s_started), "%.6f", t->started_real);
	snprintf(t->s_duration, sizeof(t->s_duration), "%.3f", t->duration_ms);
	snprintf(t->s_retry, sizeof(t->s_retry), "%lld", t->retry_ms);
}

/*
 * Record the results of a set of finished transfers in one round trip:
 * libpq's pipeline mode sends every pgeventd_finish_delivery() call, each
 * followed by its own sync, so each is its own transaction (one failing,
 * or a deadlock, cannot undo the others). A result the database did not
 * take stays unrecorded: its lease expires and the delivery is sent again
 * (at least once).
 */
static void write_results(struct relay *r, struct transfer **ts, int n)
{
	const struct relay_config *rc = &r->cfg->relay;
	char bf[16], cool[32], dis[32];
	int sent = 0;
	bool broken = false;

	snprintf(bf, sizeof(bf), "%d", rc->breaker_failures);
	snprintf(cool, sizeof(cool), "%d", rc->breaker_cooldown_ms);
	snprintf(dis, sizeof(dis), "%d", rc->disable_after_ms);
	for (int i = 0; i < n; i++)
		snprintf(ts[i]->dberr, sizeof(ts[i]->dberr), "no database connection");
	if (n == 0 || db_broken(r->conn) || PQenterPipelineMode(r->conn) != 1)
		return;
	for (; sent < n; sent++) {
		struct transfer *t = ts[sent];
		const char *p[13] = { t->id,
			              t->s_attempt,
			              t->outcome,
			              t->status ? t->s_status : NULL,
			              t->error[0] ? t->error : NULL,
			              t->response_len ? t->response : NULL,
			              t->s_started,
			              t->s_duration,
			              t->s_retry,
			              bf,
			              cool,
			              dis,
			              t->lease };

		if (!PQsendQueryPrepared(r->conn, "finish", 13, p, NULL, NULL, 0) ||
		    PQpipelineSync(r->conn) != 1)
			break;
	}
	/* Per query: its result, NULL, then the sync's PGRES_PIPELINE_SYNC. */
	for (int i = 0; i < sent && !broken; i++) {
		struct transfer *t = ts[i];
		PGresult *res = PQgetResult(r->conn);

		if (!res) {
			broken = true;
			break;
		}
		t->written = db_ok(r->conn, res, PGRES_TUPLES_OK, t->dberr, sizeof(t->dberr));
		t->applied = t->written && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
		if (t->written)
			t->dberr[0] = '\0';
		PQclear(res);
		while ((res = PQgetResult(r->conn)) != NULL) {
			bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;

			PQclear(res);
			if (sync)
				break;
		}
		if (!res) { /* the query's NULL came first: now the sync */
			res = PQgetResult(r->conn);
			broken = !res || PQresultStatus(res) != PGRES_PIPELINE_SYNC;
			PQclear(res);
		}
	}
	if (broken || PQexitPipelineMode(r->conn) != 1) {
		/* could not read the pipeline to its end: start afresh */
		log_kv(LOG_WARNING, "relay: pipeline left in a bad state, reconnecting", NULL);
		disconnect(r);
	}
}

/* Metrics, counters, the log line, and the wake-up for a retry. */
static void report(struct relay *r, struct transfer *t)
{
	const char *final = !t->written ? "unrecorded" : !t->applied ? "stale" : t->outcome;
	enum webhook_verdict v = t->verdict;

	telemetry_delivery(t->sub_name, final, t->duration_ms / 1000.0);
	if (t->applied) {
		if (v == WEBHOOK_DELIVERED)
			atomic_fetch_add(&r->st.delivered, 1);
		else if (v == WEBHOOK_RETRY)
			atomic_fetch_add(&r->st.retried, 1);
		else
			atomic_fetch_add(&r->st.failed, 1);
	}
	log_kv(v == WEBHOOK_DELIVERED ? LOG_INFO : LOG_WARNING, "delivery attempted", "delivery_id",
	       t->id, "subscription", t->sub_name, "attempt", t->s_attempt, "http_status",
	       t->status ? t->s_status : NULL, "duration_ms", t->s_duration, "outcome", final,
	       "retry_in_ms", v == WEBHOOK_RETRY ? t->s_retry : NULL, "error",
	       t->error[0] ? t->error : NULL, "db_error", t->dberr[0] ? t->dberr : NULL, NULL);
	/* A retry may be due before the next poll: wake up for it. */
	if (v == WEBHOOK_RETRY && t->applied) {
		int64_t due = util_mono_ms() + t->retry_ms;

		if (due < r->next_claim_ms)
			r->next_claim_ms = due;
	}
}

/* Claim up to the free slots; returns how many were claimed, -1 on error. */
static int claim(struct relay *r)
{
	int free_slots = r->cfg->relay.concurrency - r->ntransfers;
	char limit[16], margin[16], err[ERRLEN];
	const char *p[2] = { limit, margin };
	PGresult *res;
	int n;

	if (free_slots <= 0)
		return 0;
	snprintf(limit, sizeof(limit), "%d", free_slots);
	snprintf(margin, sizeof(margin), "%d",
	         r->cfg->relay.connect_timeout_ms + r->cfg->relay.lease_margin_ms);
	res = PQexecPrepared(r->conn, "claim", 2, p, NULL, NULL, 0);
	if (!db_ok(r->conn, res, PGRES_TUPLES_OK, err, sizeof(err))) {
		log_kv(LOG_WARNING, "relay: claim failed", "error", err, NULL);
		set_failing(r, err);
		PQclear(res);
		return -1;
	}
	atomic_store(&r->st.failing, 0);
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		struct transfer *t = transfer_new(r, res, i, err);

		if (!t) {
			/* Cannot even be sent (bad header, unsignable secret): a
			 * permanent failure of this delivery, recorded as such. */
			const char *fp[13] = { PQgetvalue(res, i, D_ID),
				               PQgetvalue(res, i, D_ATTEMPT),
				               "failed",
				               NULL,
				               err,
				               NULL,
				               "0",
				               "0",
				               "0",
				               "0",
				               "0",
				               "0",
				               PQgetvalue(res, i, D_LEASE) };
			char started[32];

			snprintf(started, sizeof(started), "%.6f", util_real_s());
			fp[6] = started;
			PGresult *fr = PQexecPrepared(r->conn, "finish", 13, fp, NULL, NULL, 0);
			PQclear(fr);
			log_kv(LOG_ERROR, "delivery cannot be sent", "delivery_id",
			       PQgetvalue(res, i, D_ID), "subscription",
			       PQgetvalue(res, i, D_SUB_NAME), "error", err, NULL);
			continue;
		}
		r->transfers[r->ntransfers++] = t;
	}
	PQclear(res);
	atomic_store(&r->st.in_flight, r->ntransfers);
	telemetry_deliveries_in_flight(r->ntransfers);
	return n;
}

/* Put the leases of the transfers still in flight back (shutdown). */
static void release_all(struct relay *r)
{
	for (int i = 0; i < r->ntransfers; i++) {
		struct transfer *t = r->transfers[i];
		char err[ERRLEN];
		const char *p[2] = { t->id, t->lease };

		if (!db_broken(r->conn)) {
			PGresult *res = PQexecPrepared(r->conn, "release", 2, p, NULL, NULL, 0);

			if (!db_ok(r->conn, res, PGRES_COMMAND_OK, err, sizeof(err)))
				log_kv(LOG_WARNING, "relay: could not release a lease",
				       "delivery_id", t->id, "error", err, NULL);
			PQclear(res);
		}
		transfer_free(t);
	}
	if (r->ntransfers)
		log_kv(LOG_NOTICE, "relay: unfinished deliveries put back to pending", NULL);
	r->ntransfers = 0;
	atomic_store(&r->st.in_flight, 0);
	telemetry_deliveries_in_flight(0);
}

static void collect(struct relay *r)
{
	struct transfer *done[r->cfg->relay.concurrency > 0 ? r->cfg->relay.concurrency : 1];
	CURLMsg *msg;
	int left, n = 0;

	while ((msg = curl_multi_info_read(r->multi, &left))) {
		char *priv = NULL;
		struct transfer *t;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		t = (struct transfer *)(void *)priv;
		judge(r, t, msg->data.result);
		for (int i = 0; i < r->ntransfers; i++) {
			if (r->transfers[i] == t) {
				r->transfers[i] = r->transfers[--r->ntransfers];
				break;
			}
		}
		done[n++] = t;
	}
	write_results(r, done, n);
	for (int i = 0; i < n; i++) {
		report(r, done[i]);
		transfer_free(done[i]);
	}
	/* A slot came free: claim again at once if more is due, or if
	 * deliveries were queued while every slot was busy. */
	if (n > 0 && (r->more || r->notified))
		r->next_claim_ms = 0;
	atomic_store(&r->st.in_flight, r->ntransfers);
	telemetry_deliveries_in_flight(r->ntransfers);
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	int64_t stop_deadline = 0;

	log_kv(LOG_INFO, "relay started", NULL);
	r->reconnect_delay_ms = 100;
	/* the start is the reference a stall is measured from */
	atomic_store(&r->st.heartbeat, util_mono_s());
	for (;;) {
		int64_t now = util_mono_ms();
		bool stopping = atomic_load(&r->rt->stopping) != 0;
		int running = 0;

		/* A turn is progress unless claims (or connecting) keep failing:
		 * a back-off is not. */
		if (!atomic_load(&r->st.failing))
			atomic_store(&r->st.heartbeat, util_mono_s());
		/* relay.concurrency needs a restart (the slots are sized at start);
		 * every other relay.* key applies from this turn on. */
		if (!runtime_config_current(r->rt, r->cfg)) {
			r->cfg = runtime_config_refresh(r->rt, r->cfg);
			/* a new poll interval (or anything else) shapes the next claim */
			r->next_claim_ms = 0;
			if (r->cfg->relay.block_private_networks && !r->blocking)
				r->block_since_ms = now;
			else if (!r->cfg->relay.block_private_networks)
				r->block_since_ms = 0;
			r->blocking = r->cfg->relay.block_private_networks;
		}
		if (stopping && !stop_deadline)
			stop_deadline = now + r->cfg->shutdown_timeout_ms;
		if (stopping &&
		    (r->ntransfers == 0 || atomic_load(&r->rt->aborting) || now >= stop_deadline))
			break;
		/* run --once cannot wait for a database that is gone: the
		 * workers have stopped, and what is left stays queued. */
		if (r->rt->once && !r->conn && r->ntransfers == 0 &&
		    atomic_load(&r->rt->finished) >= r->cfg->workers)
			break;
		if (db_broken(r->conn)) {
			if (r->conn) {
				log_kv(LOG_WARNING, "relay: database connection lost", NULL);
				disconnect(r);
			}
			if (now >= r->reconnect_at_ms && connect_db(r))
				r->next_claim_ms = 0;
		}
		if (r->conn && !stopping) {
			if (util_mono_s() - r->last_reclaim >= RECLAIM_EVERY_S) {
				char err[ERRLEN];

				r->last_reclaim = util_mono_s();
				PGresult *res =
				    PQexecPrepared(r->conn, "reclaim", 0, NULL, NULL, NULL, 0);
				if (!db_ok(r->conn, res, PGRES_COMMAND_OK, err, sizeof(err))) {
					log_kv(LOG_WARNING, "relay: lease reclaim failed", "error",
					       err, NULL);
					set_failing(r, err);
				} else if (atoi(PQcmdTuples(res)) > 0)
					log_kv(LOG_NOTICE,
					       "relay: expired leases put back to pending",
					       "deliveries", PQcmdTuples(res), NULL);
				PQclear(res);
			}
			/* While a backlog drains, claim in batches: a claim is a round
			 * trip, so wait until a quarter of the slots are free. */
			int free_slots = r->cfg->relay.concurrency - r->ntransfers;
			int min_batch = r->more ? (r->cfg->relay.concurrency + 3) / 4 : 1;

			if (now >= r->next_claim_ms && free_slots < min_batch) {
				/* not worth a round trip yet: collect() wakes us */
				r->next_claim_ms = now + r->cfg->poll_interval_ms;
			} else if (now >= r->next_claim_ms) {
				int asked = r->cfg->relay.concurrency - r->ntransfers;
				int n = claim(r);

				r->notified = false;

				/* A full claim means more may be due: claim again as soon as
				 * a slot frees up (collect() resets next_claim_ms). */
				r->more = n == asked;
				r->next_claim_ms = now + r->cfg->poll_interval_ms;
				/* run --once: done when the workers are and nothing is due */
				if (r->rt->once && n == 0 && r->ntransfers == 0 &&
				    atomic_load(&r->rt->finished) >= r->cfg->workers)
					break;
			}
		}
		curl_multi_perform(r->multi, &running);
		collect(r);

		/* A NOTIFY that libpq read while it waited for a result (a claim,
		 * a result write) is in its buffer, where poll() cannot see it. */
		if (r->conn && r->cfg->listen && db_drain_notifies(r->conn) > 0) {
			r->notified = true;
			r->next_claim_ms = 0;
		}

		/* Wait for sockets, a NOTIFY, shutdown, or the next claim. */
		struct curl_waitfd fds[2];
		unsigned nfds = 0;
		int64_t wait = r->next_claim_ms - util_mono_ms();

		if (!r->conn)
			wait = r->reconnect_at_ms - util_mono_ms();
		if (stopping)
			wait = 100;
		wait = wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
		if (r->conn && r->cfg->listen && PQsocket(r->conn) >= 0)
			fds[nfds++] =
			    (struct curl_waitfd){ PQsocket(r->conn), CURL_WAIT_POLLIN, 0 };
		if (!stopping)
			fds[nfds++] = (struct curl_waitfd){ r->rt->wake_fd, CURL_WAIT_POLLIN, 0 };
		curl_multi_poll(r->multi, fds, nfds, (int)wait, NULL);
		if (r->conn && nfds > 0 && fds[0].fd == PQsocket(r->conn) && fds[0].revents) {
			int got = db_drain_notifies(r->conn);

			if (got > 0) {
				r->notified = true;
				r->next_claim_ms = 0;
			}
		}
	}
	release_all(r);
	disconnect(r);
	runtime_config_put(r->rt, r->cfg);
	r->cfg = NULL;
	log_kv(LOG_INFO, "relay stopped", NULL);
	atomic_store(&r->rt->relay_done, 1);
	return NULL;
}

struct relay *relay_start(struct runtime *rt)
{
	struct relay *r = calloc(1, sizeof(*r));
	const struct config *cfg = runtime_config(rt);
	int rc;

	if (!r)
		return NULL;
	r->cfg = runtime_config_refresh(rt, NULL);
	r->blocking = r->cfg->relay.block_private_networks;
	r->rt = rt;
	r->multi = curl_multi_init();
	r->transfers = calloc((size_t)cfg->relay.concurrency, sizeof(*r->transfers));
	if (!r->multi || !r->transfers)
		goto fail;
	curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->relay.concurrency);
	rc = pthread_create(&r->thread, NULL, relay_main, r);
	if (rc != 0) {
		log_kv(LOG_ERROR, "cannot start the relay thread", "error", strerror(rc), NULL);
		goto fail;
	}
	return r;
fail:
	if (r->multi)
		curl_multi_cleanup(r->multi);
	runtime_config_put(rt, r->cfg);
	free(r->transfers);
	free(r);
	return NULL;
}

void relay_join(struct relay *r)
{
	if (!r)
		return;
	pthread_join(r->thread, NULL);
	curl_multi_cleanup(r->multi);
	free(r->transfers);
	free(r);
}

const struct relay_state *relay_state(const struct relay *r)
{
	return r ? &r->st : NULL;
}
