/* health.c -- /health, /health/live, /health/ready, /metrics and the
 * queue sampler behind them. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "health.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "db.h"
#include "httpd.h"
#include "log.h"
#include "migrate.h"
#include "stats.h"
#include "telemetry.h"
#include "util.h"

/* What the sampler saw last; under `lock`. */
struct sample {
	bool valid;                   /* the last attempt got the oldest age */
	double at;                    /* wall clock of the last valid sample, 0 = never */
	long long pending;            /* unprocessed events; -1 unknown (the count timed out) */
	double oldest_age_s;          /* age of the oldest of them, 0 when none */
	long long dead_letters;       /* -1 unknown */
	int migrations_pending;       /* last known; -1 never checked */
	long long deliveries_pending; /* -1 unknown or relay off */
	long long deliveries_dead;    /* -1 unknown or relay off */
	json_t *disabled;             /* [{name, reason, disabled_at}], owned; NULL unknown */
	char pending_names[256];
	char error[256]; /* why the last attempt failed */
};

struct health {
	struct health_deps d;
	/* A reference to the configuration at start, for the keys that need a
	 * restart (conninfo, packs, health.listen): they never change. */
	const struct config *boot;
	double started_real;
	double started_mono;
	_Atomic double main_beat; /* monotonic */
	struct httpd *httpd;

	pthread_mutex_t lock; /* sample, config */
	struct sample sample;
	json_t *config; /* rendered config, owned */

	pthread_t sampler;
	bool sampler_started;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stop;
};

/* ---- helpers ----------------------------------------------------------- */

/* poll_interval_ms in force (SIGHUP may change it). */
static int poll_interval_ms(struct health *h)
{
	const struct config *c = runtime_config_refresh(h->d.rt, NULL);
	int ms = c->poll_interval_ms;

	runtime_config_put(h->d.rt, c);
	return ms;
}

/* "2026-11-23T23:06:21.052Z", or JSON null for 0. */
static json_t *json_time(double t)
{
	char buf[64];
	time_t s;
	struct tm tm;

	if (t <= 0)
		return json_null();
	s = (time_t)t;
	gmtime_r(&s, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)((t - (double)s) * 1000.0) % 1000);
	return json_string(buf);
}

static void set_body(struct http_response *resp, int status, const char *type, char *body)
{
	resp->status = status;
	resp->content_type = type;
	resp->body = body;
	resp->body_len = body ? strlen(body) : 0;
}

static void set_text(struct http_response *resp, int status, const char *text)
{
	set_body(resp, status, "text/plain; charset=utf-8", strdup(text));
	if (!resp->body)
		resp->status = 500;
}

static void set_json(struct http_response *resp, int status, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	char *body = NULL;

	json_decref(o);
	if (s && asprintf(&body, "%s\n", s) < 0)
		body = NULL;
	free(s);
	if (!body) {
		set_text(resp, 500, "out of memory\n");
		return;
	}
	set_body(resp, status, "application/json", body);
}

/* ---- the sampler ------------------------------------------------------- */

/* How late the queue is: how long the oldest due event has been due (an
 * event in backoff or scheduled for later is not late). min() reads the
 * claim index (events_due_idx) from its start: cheap whatever the backlog.
 * The count reads the whole index and may hit the timeout on a huge
 * backlog; the age alone still tells how late the queue is. */
static const char oldest_sql[] =
    "SELECT coalesce(extract(epoch from now() - min(coalesce(next_attempt_at, created_at))),"
    " 0)::float8 FROM events WHERE NOT processed AND coalesce(next_attempt_at, created_at) <= "
    "now()";
static const char pending_sql[] = "SELECT count(*) FROM events WHERE NOT processed";
static const char dead_sql[] = "SELECT count(*) FROM event_dead_letters";
static const char deliveries_sql[] =
    "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending'),"
    " (SELECT count(*) FROM deliveries WHERE status = 'dead')";
static const char subscriptions_sql[] =
    "SELECT name, enabled, coalesce(disabled_reason, ''), coalesce(disabled_at::text, '')"
    " FROM subscriptions ORDER BY name";
/* When the exact count times out on a huge table, the planner's estimate. */
static const char dead_estimate_sql[] = "SELECT greatest(reltuples, 0)::bigint FROM pg_class"
                                        " WHERE oid = 'event_dead_letters'::regclass";

/* One row, first column(s) as text; false with err. */
static PGresult *query(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);

	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen) || PQntuples(res) != 1) {
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
			snprintf(err, errlen, "expected one row");
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Update `s` from the database; the figures that cannot be read are
 * marked unknown, and `valid` says whether the queue age was read. */
static void take_sample(struct health *h, PGconn *conn, struct sample *s)
{
	char err[256] = "";
	char names[sizeof(s->pending_names)];
	PGresult *res = query(conn, oldest_sql, err, sizeof(err));
	int n;

	s->valid = res != NULL;
	if (res) {
		s->oldest_age_s = atof(PQgetvalue(res, 0, 0));
		s->at = util_real_s();
		PQclear(res);
	}
	s->pending = -1;
	if (!db_broken(conn) && (res = query(conn, pending_sql, err, sizeof(err)))) {
		s->pending = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->dead_letters = -1;
	if (!db_broken(conn) && ((res = query(conn, dead_sql, err, sizeof(err))) ||
	                         (res = query(conn, dead_estimate_sql, err, sizeof(err))))) {
		s->dead_letters = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->deliveries_pending = s->deliveries_dead = -1;
	if (h->d.relay && !db_broken(conn) &&
	    (res = query(conn, deliveries_sql, err, sizeof(err)))) {
		s->deliveries_pending = atoll(PQgetvalue(res, 0, 0));
		s->deliveries_dead = atoll(PQgetvalue(res, 0, 1));
		PQclear(res);
		telemetry_deliveries_pending((double)s->deliveries_pending);
	}
	if (h->d.relay && !db_broken(conn)) {
		res = PQexec(conn, subscriptions_sql);
		if (db_ok(conn, res, PGRES_TUPLES_OK, err, sizeof(err))) {
			s->disabled = json_array();
			for (int i = 0; i < PQntuples(res); i++) {
				bool enabled = PQgetvalue(res, i, 1)[0] == 't';

				telemetry_subscription_disabled(PQgetvalue(res, i, 0), !enabled);
				if (!enabled)
					json_array_append_new(
					    s->disabled,
					    json_pack("{s:s, s:s, s:s}", "name",
					              PQgetvalue(res, i, 0), "reason",
					              PQgetvalue(res, i, 2), "disabled_at",
					              PQgetvalue(res, i, 3)));
			}
		}
		PQclear(res);
	}
	if (!db_broken(conn)) {
		n = migrate_pending(conn, h->boot, names, sizeof(names), err, sizeof(err));
		if (n >= 0) {
			s->migrations_pending = n;
			snprintf(s->pending_names, sizeof(s->pending_names), "%s", names);
		}
	}
	snprintf(s->error, sizeof(s->error), "%s", err);
}

/* Wait up to `s` seconds for the stop flag; true when stopping. */
static bool sampler_wait(struct health *h, int s)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += s;
	pthread_mutex_lock(&h->stop_lock);
	while (!h->stop) {
		if (pthread_cond_timedwait(&h->stop_cond, &h->stop_lock, &ts) == ETIMEDOUT)
			break;
	}
	stop = h->stop;
	pthread_mutex_unlock(&h->stop_lock);
	return stop;
}

static void *sampler_main(void *arg)
{
	struct health *h = arg;
	PGconn *conn = NULL;
	bool told = false;

	do {
		struct sample s;
		char err[256] = "";

		pthread_mutex_lock(&h->lock);
		s = h->sample;
		pthread_mutex_unlock(&h->lock);
		s.disabled = NULL; /* h->sample still owns the old list */

		if (db_broken(conn)) {
			PQfinish(conn);
			conn =
			    db_connect(conf_conninfo(h->boot), "pgeventd health", err, sizeof(err));
			if (conn &&
			    !db_exec(conn, "SET statement_timeout = '2s'", err, sizeof(err))) {
				PQfinish(conn);
				conn = NULL;
			}
		}
		if (!conn) {
			s.valid = false;
			s.pending = s.dead_letters = -1;
			s.deliveries_pending = s.deliveries_dead = -1;
			snprintf(s.error, sizeof(s.error), "%s", err);
		} else {
			take_sample(h, conn, &s);
		}
		if (!s.valid && !told)
			log_kv(LOG_WARNING, "queue figures unavailable", "error", s.error, NULL);
		else if (s.valid && told)
			log_kv(LOG_NOTICE, "queue figures available again", NULL);
		told = !s.valid;
		/* Unknown figures are NaN: a stale value would hide a growing lag. */
		telemetry_queue(s.pending >= 0 ? (double)s.pending : NAN,
		                s.valid ? s.oldest_age_s : NAN,
		                s.dead_letters >= 0 ? (double)s.dead_letters : NAN);
		pthread_mutex_lock(&h->lock);
		json_t *old = h->sample.disabled;
		h->sample = s;
		pthread_mutex_unlock(&h->lock);
		json_decref(old);
	} while (!sampler_wait(h, HEALTH_SAMPLE_S));
	PQfinish(conn);
	return NULL;
}

/* ---- status rules ------------------------------------------------------- */

enum status { ST_OK, ST_DEGRADED, ST_DOWN };
static const char *const status_names[] = { "ok", "degraded", "down" };

struct verdict {
	enum status status;
	json_t *reasons; /* array of strings, owned */
};

static void worse(struct verdict *v, enum status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void worse(struct verdict *v, enum status st, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (st > v->status)
		v->status = st;
	json_array_append_new(v->reasons, json_string(buf));
}

static struct verdict judge(struct health *h, const struct sample *s)
{
	struct verdict v = { ST_OK, json_array() };
	double now = util_real_s(), mono = util_mono_s();
	double newest_change = h->started_real, newest_beat = h->started_mono;
	double stall_s = 3.0 * poll_interval_ms(h) / 1000.0 + 5.0;
	int connected = 0, failing = 0;
	char error[256] = "";

	for (int i = 0; i < h->d.nworkers; i++) {
		struct worker *w = &h->d.workers[i];
		double changed = atomic_load(&w->connected_changed_at);
		double beat = atomic_load(&w->heartbeat);

		if (atomic_load(&w->failing) && failing++ == 0)
			worker_last_error(w, error, sizeof(error));
		if (atomic_load(&w->connected)) {
			connected++;
			if (beat > newest_beat)
				newest_beat = beat;
		}
		if (changed > newest_change)
			newest_change = changed;
	}
	if (connected == 0) {
		double for_s = now - newest_change;

		worse(&v, for_s > HEALTH_DOWN_AFTER_S ? ST_DOWN : ST_DEGRADED,
		      "no worker connected to the database for %.0f s", for_s);
	} else {
		if (connected < h->d.nworkers)
			worse(&v, ST_DEGRADED, "%d of %d workers connected to the database",
			      connected, h->d.nworkers);
		/* Progress: a claim cycle, a handled event, a wait that ended. */
		if (mono - newest_beat > stall_s && !atomic_load(&h->d.rt->stopping))
			worse(&v, ST_DOWN, "no claim loop progress for %.0f s (limit %.0f s)",
			      mono - newest_beat, stall_s);
	}
	/* A batch that cannot commit is no progress: say so at once, with why. */
	if (failing)
		worse(&v, ST_DEGRADED, "%d of %d workers cannot complete a batch: %s", failing,
		      h->d.nworkers, error[0] ? error : "unknown error");
	if (h->d.relay && atomic_load(&h->d.relay->failing)) {
		relay_last_error(h->d.relay, error, sizeof(error));
		worse(&v, ST_DEGRADED, "relay cannot claim deliveries: %s",
		      error[0] ? error : "unknown error");
	}
	if (s->at == 0)
		worse(&v, ST_DEGRADED, "queue figures not sampled yet%s%s", s->error[0] ? ": " : "",
		      s->error);
	else if (now - s->at > HEALTH_STALE_S)
		worse(&v, ST_DEGRADED, "queue figures %.0f s old%s%s", now - s->at,
		      s->error[0] ? ": " : "", s->error);
	if (atomic_load(&h->d.rt->stopping))
		worse(&v, ST_DEGRADED, "shutting down");
	return v;
}

/* ---- endpoints --------------------------------------------------------- */

static json_t *workers_json(struct health *h)
{
	json_t *a = json_array();

	for (int i = 0; i < h->d.nworkers; i++) {
		struct worker *w = &h->d.workers[i];
		char name[32];

		json_t *o;
		char error[256];

		snprintf(name, sizeof(name), "worker-%d", i + 1);
		o = json_pack("{s:s, s:b, s:o}", "name", name, "connected",
		              atomic_load(&w->connected) != 0, "last_claim_at",
		              json_time(atomic_load(&w->last_claim_at)));
		worker_last_error(w, error, sizeof(error));
		if (o && error[0])
			json_object_set_new(o, "error", json_string(error));
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *stats_json(void)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "processed",
	                 (json_int_t)atomic_load(&stats.processed), "succeeded",
	                 (json_int_t)atomic_load(&stats.succeeded), "retried",
	                 (json_int_t)atomic_load(&stats.retried), "dead_lettered",
	                 (json_int_t)atomic_load(&stats.dead_lettered), "skipped",
	                 (json_int_t)atomic_load(&stats.skipped), "batches",
	                 (json_int_t)atomic_load(&stats.batches), "db_reconnects",
	                 (json_int_t)atomic_load(&stats.db_reconnects), "last_processed_at",
	                 json_time(atomic_load(&stats.last_processed_at)));
}

static json_t *count_or_null(long long n)
{
	return n >= 0 ? json_integer(n) : json_null();
}

static json_t *queue_json(const struct sample *s)
{
	json_t *q = json_pack(
	    "{s:o, s:o, s:o, s:o}", "pending", count_or_null(s->pending), "oldest_pending_age_s",
	    s->at > 0 ? json_real(round(s->oldest_age_s * 1000.0) / 1000.0) : json_null(),
	    "dead_letters", count_or_null(s->dead_letters), "sampled_at", json_time(s->at));

	if (q && s->error[0])
		json_object_set_new(q, "error", json_string(s->error));
	return q;
}

static json_t *registry_json(const struct registry *reg)
{
	json_t *a = json_array();

	for (size_t i = 0; i < reg->n; i++) {
		const struct handler_entry *e = reg->entries[i];

		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s}", "event_type",
		                                   e->event_type, "handler", e->name, "pack",
		                                   reg->packs[i]->name, "description",
		                                   e->description ? e->description : ""));
	}
	return a;
}

static json_t *relay_json(const struct relay_state *r, const struct sample *s)
{
	char error[256];
	json_t *o = json_pack(
	    "{s:b, s:i, s:I, s:I, s:I, s:o, s:o, s:O}", "connected",
	    atomic_load(&r->connected) != 0, "in_flight", atomic_load(&r->in_flight), "delivered",
	    (json_int_t)atomic_load(&r->delivered), "retried", (json_int_t)atomic_load(&r->retried),
	    "failed", (json_int_t)atomic_load(&r->failed), "pending",
	    count_or_null(s->deliveries_pending), "dead", count_or_null(s->deliveries_dead),
	    "disabled_subscriptions", s->disabled ? s->disabled : json_null());

	relay_last_error(r, error, sizeof(error));
	if (o && error[0])
		json_object_set_new(o, "error", json_string(error));
	return o;
}

static void serve_health(struct health *h, struct http_response *resp)
{
	struct sample s;
	json_t *config, *o;
	double now = util_real_s();

	pthread_mutex_lock(&h->lock);
	s = h->sample;
	s.disabled = json_deep_copy(s.disabled); /* ours now; NULL stays NULL */
	config = json_deep_copy(h->config);
	pthread_mutex_unlock(&h->lock);

	struct verdict v = judge(h, &s);
	o = json_pack("{s:s, s:o, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "status",
	              status_names[v.status], "reasons", v.reasons, "service", "pgeventd",
	              "version", PACKAGE_VERSION, "uptime_s", (json_int_t)(now - h->started_real),
	              "started_at", json_time(h->started_real), "workers", workers_json(h), "stats",
	              stats_json(), "queue", queue_json(&s), "config",
	              config ? config : json_object(), "registry", registry_json(h->d.reg));
	if (o && h->d.relay)
		json_object_set_new(o, "relay", relay_json(h->d.relay, &s));
	json_decref(s.disabled);
	set_json(resp, v.status == ST_DOWN ? 503 : 200, o);
}

bool health_loops_turning(const struct health_deps *d, char *why, size_t len)
{
	const struct config *c = runtime_config_refresh(d->rt, NULL);
	double now = util_mono_s();
	double limit = 3.0 * c->poll_interval_ms / 1000.0;
	bool ok = true;

	if (limit < c->stall_timeout_ms / 1000.0)
		limit = c->stall_timeout_ms / 1000.0;
	runtime_config_put(d->rt, c);
	if (atomic_load(&d->rt->stopping))
		return true; /* loops wind down on purpose */
	for (int i = 0; i < d->nworkers && ok; i++) {
		double beat = atomic_load(&d->workers[i].heartbeat);

		if (beat > 0 && now - beat > limit) {
			snprintf(why, len, "worker-%d stalled for %.0f s", i + 1, now - beat);
			ok = false;
		}
	}
	if (ok && d->relay) {
		double beat = atomic_load(&d->relay->heartbeat);

		if (beat > 0 && now - beat > limit) {
			snprintf(why, len, "relay stalled for %.0f s", now - beat);
			ok = false;
		}
	}
	return ok;
}

static void serve_live(struct health *h, struct http_response *resp)
{
	double now = util_mono_s();
	char msg[256], why[200];

	if (now - atomic_load(&h->main_beat) > 5) {
		snprintf(msg, sizeof(msg), "main loop stalled for %.0f s\n",
		         now - atomic_load(&h->main_beat));
		set_text(resp, 503, msg);
		return;
	}
	if (!health_loops_turning(&h->d, why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "%s\n", why);
		set_text(resp, 503, msg);
		return;
	}
	set_text(resp, 200, "live\n");
}

static void serve_ready(struct health *h, struct http_response *resp)
{
	struct sample s;
	int connected = 0, working = 0;
	char msg[512], error[256] = "";

	pthread_mutex_lock(&h->lock);
	s = h->sample;
	pthread_mutex_unlock(&h->lock);
	for (int i = 0; i < h->d.nworkers; i++) {
		struct worker *w = &h->d.workers[i];

		connected += atomic_load(&w->connected) != 0;
		if (atomic_load(&w->connected) && !atomic_load(&w->failing))
			working++;
		else if (!error[0])
			worker_last_error(w, error, sizeof(error));
	}
	if (atomic_load(&h->d.rt->stopping))
		snprintf(msg, sizeof(msg), "not ready: shutting down\n");
	else if (connected == 0)
		snprintf(msg, sizeof(msg), "not ready: no worker connected to the database\n");
	else if (working == 0)
		snprintf(msg, sizeof(msg), "not ready: no worker can complete a batch: %s\n",
		         error[0] ? error : "unknown error");
	else if (s.migrations_pending < 0)
		snprintf(msg, sizeof(msg), "not ready: migrations not checked yet%s%s\n",
		         s.error[0] ? ": " : "", s.error);
	else if (s.migrations_pending > 0)
		snprintf(msg, sizeof(msg), "not ready: migrations pending: %s\n", s.pending_names);
	else
		snprintf(msg, sizeof(msg), "ready\n");
	set_text(resp, strcmp(msg, "ready\n") == 0 ? 200 : 503, msg);
}

static void serve_metrics(struct http_response *resp)
{
	size_t len = 0;
	char *text = telemetry_render(&len);

	if (!text) {
		set_text(resp, 500, "metrics unavailable\n");
		return;
	}
	resp->status = 200;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	resp->body = text;
	resp->body_len = len;
}

static void route(void *arg, const struct http_request *req, struct http_response *resp)
{
	struct health *h = arg;

	if (strcmp(req->path, "/health") == 0)
		serve_health(h, resp);
	else if (strcmp(req->path, "/health/live") == 0)
		serve_live(h, resp);
	else if (strcmp(req->path, "/health/ready") == 0)
		serve_ready(h, resp);
	else if (strcmp(req->path, "/metrics") == 0)
		serve_metrics(resp);
	else
		set_text(resp, 404,
		         "not found: try /health, /health/live, /health/ready, /metrics\n");
}

/* ---- life cycle ---------------------------------------------------------- */

static void add_key(void *arg, const char *key, const char *value, const char *def, bool reloadable,
                    const char *help)
{
	(void)def;
	(void)reloadable;
	(void)help;
	json_object_set_new(arg, key, json_string(value ? value : ""));
}

void health_config_changed(struct health *h)
{
	json_t *c;

	if (!h || !(c = json_object()))
		return;
	conf_visit(runtime_config(h->d.rt), add_key, c);
	pthread_mutex_lock(&h->lock);
	json_decref(h->config);
	h->config = c;
	pthread_mutex_unlock(&h->lock);
}

void health_tick(struct health *h)
{
	if (h)
		atomic_store(&h->main_beat, util_mono_s());
}

int health_port(const struct health *h)
{
	return h && h->httpd ? httpd_port(h->httpd) : 0;
}

struct health *health_start(const struct health_deps *deps, char *err, size_t errlen)
{
	struct health *h = calloc(1, sizeof(*h));
	pthread_condattr_t ca;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->d = *deps;
	h->boot = runtime_config_refresh(deps->rt, NULL);
	h->started_real = util_real_s();
	h->started_mono = util_mono_s();
	atomic_store(&h->main_beat, util_mono_s());
	/* run checked the migrations just before starting us */
	h->sample.migrations_pending = 0;
	h->sample.deliveries_pending = h->sample.deliveries_dead = -1;
	snprintf(h->sample.error, sizeof(h->sample.error), "starting");
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->stop_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->stop_cond, &ca);
	pthread_condattr_destroy(&ca);
	health_config_changed(h);

	if (h->boot->health_listen && h->boot->health_listen[0]) {
		struct httpd_options opt = { .listen = h->boot->health_listen };

		h->httpd = httpd_start(&opt, route, h, err, errlen);
		if (!h->httpd) {
			health_stop(h);
			return NULL;
		}
		char port[16];

		snprintf(port, sizeof(port), "%d", httpd_port(h->httpd));
		log_kv(LOG_NOTICE, "health server listening", "listen", h->boot->health_listen,
		       "port", port, NULL);
	}
	if (pthread_create(&h->sampler, NULL, sampler_main, h) != 0) {
		snprintf(err, errlen, "cannot start the queue sampler thread");
		health_stop(h);
		return NULL;
	}
	h->sampler_started = true;
	return h;
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	httpd_stop(h->httpd);
	if (h->sampler_started) {
		pthread_mutex_lock(&h->stop_lock);
		h->stop = true;
		pthread_cond_signal(&h->stop_cond);
		pthread_mutex_unlock(&h->stop_lock);
		pthread_join(h->sampler, NULL);
	}
	json_decref(h->config);
	json_decref(h->sample.disabled);
	runtime_config_put(h->d.rt, h->boot);
	pthread_cond_destroy(&h->stop_cond);
	pthread_mutex_destroy(&h->stop_lock);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
