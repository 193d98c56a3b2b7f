/* health.c -- the routes /health, /health/live, /health/ready and /metrics, and their JSON. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "health.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "httpd.h"
#include "liveness.h"
#include "log.h"
#include "routes.h"
#include "sampler.h"
#include "stats.h"
#include "telemetry.h"
#include "util.h"

struct health {
	struct health_deps d;
	/* A reference to the configuration at start, for health.listen: it
	 * needs a restart, so it never changes. */
	const struct config *boot;
	double started_real;
	double started_mono;
	_Atomic double main_beat; /* monotonic */
	struct httpd *httpd;      /* owned; NULL when health.listen is "" */
	struct sampler *sampler;  /* owned */

	pthread_mutex_t lock; /* config */
	json_t *config;       /* rendered config, owned */
	json_t *routes;       /* the SQL routes in force, as registry rows; owned */
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

/* ---- status rules ------------------------------------------------------- */

enum status { ST_OK, ST_DEGRADED, ST_DOWN };
static const char *const status_names[] = { "ok", "degraded", "down" };

struct verdict {
	enum status status;
	json_t *reasons; /* array of strings, owned */
};

static void add_reason(struct verdict *v, enum status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_reason(struct verdict *v, enum status st, const char *fmt, ...)
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

static struct verdict assess_health(struct health *h, const struct sample *s)
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

		add_reason(&v, for_s > HEALTH_DOWN_AFTER_S ? ST_DOWN : ST_DEGRADED,
		           "no worker connected to the database for %.0f s", for_s);
	} else {
		if (connected < h->d.nworkers)
			add_reason(&v, ST_DEGRADED, "%d of %d workers connected to the database",
			           connected, h->d.nworkers);
		/* Progress: a claim cycle, a handled event, a wait that ended. */
		if (mono - newest_beat > stall_s && !atomic_load(&h->d.rt->stopping))
			add_reason(&v, ST_DOWN, "no claim loop progress for %.0f s (limit %.0f s)",
			           mono - newest_beat, stall_s);
	}
	/* A batch that cannot commit is no progress: say so at once, with why. */
	if (failing)
		add_reason(&v, ST_DEGRADED, "%d of %d workers cannot complete a batch: %s", failing,
		           h->d.nworkers, error[0] ? error : "unknown error");
	if (h->d.relay && atomic_load(&h->d.relay->failing)) {
		relay_last_error(h->d.relay, error, sizeof(error));
		add_reason(&v, ST_DEGRADED, "relay cannot claim deliveries: %s",
		           error[0] ? error : "unknown error");
	}
	if (s->at == 0)
		add_reason(&v, ST_DEGRADED, "queue figures not sampled yet%s%s",
		           s->error[0] ? ": " : "", s->error);
	else if (now - s->at > HEALTH_STALE_S)
		add_reason(&v, ST_DEGRADED, "queue figures %.0f s old%s%s", now - s->at,
		           s->error[0] ? ": " : "", s->error);
	if (atomic_load(&h->d.rt->stopping))
		add_reason(&v, ST_DEGRADED, "shutting down");
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

/* The C handlers, then the SQL routes (kind "sql", one row per pattern). */
static json_t *registry_json(const struct registry *reg, json_t *routes)
{
	json_t *a = json_array();

	for (size_t i = 0; i < reg->n; i++) {
		const struct handler_entry *e = reg->entries[i];

		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s}", "event_type",
		                                   e->event_type, "handler", e->name, "kind", "c",
		                                   "pack", reg->packs[i]->name, "description",
		                                   e->description ? e->description : ""));
	}
	if (routes)
		json_array_extend(a, routes);
	json_decref(routes);
	return a;
}

static json_t *routes_json(const struct route_list *l)
{
	json_t *a = json_array();

	for (int i = 0; a && i < l->n; i++) {
		const struct route *r = &l->items[i];

		for (int k = 0; k < r->events.n; k++)
			json_array_append_new(
			    a, json_pack(
			           "{s:s, s:s, s:s, s:s, s:s}", "event_type", r->events.items[k],
			           "handler", r->name, "kind", "sql", "function",
			           r->signature ? r->signature : r->call, "description",
			           "SQL route: calls the function inside the batch transaction"));
	}
	return a;
}

static json_t *relay_json(const struct relay_state *r, const struct sample *s)
{
	char error[256];
	json_t *o = json_pack(
	    "{s:b, s:i, s:I, s:I, s:I, s:o, s:o, s:O, s:O}", "connected",
	    atomic_load(&r->connected) != 0, "in_flight", atomic_load(&r->in_flight), "delivered",
	    (json_int_t)atomic_load(&r->delivered), "retried", (json_int_t)atomic_load(&r->retried),
	    "failed", (json_int_t)atomic_load(&r->failed), "pending",
	    count_or_null(s->deliveries_pending), "dead", count_or_null(s->deliveries_dead),
	    "disabled_subscriptions", s->disabled ? s->disabled : json_null(),
	    "failing_subscriptions", s->failing ? s->failing : json_null());

	relay_last_error(r, error, sizeof(error));
	if (o && error[0])
		json_object_set_new(o, "error", json_string(error));
	return o;
}

static void serve_health(struct health *h, struct http_response *resp)
{
	struct sample s;
	json_t *config, *routes, *o;
	double now = util_real_s();

	sampler_read(h->sampler, &s);
	pthread_mutex_lock(&h->lock);
	config = json_deep_copy(h->config);
	routes = json_deep_copy(h->routes);
	pthread_mutex_unlock(&h->lock);

	struct verdict v = assess_health(h, &s);
	o = json_pack("{s:s, s:o, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "status",
	              status_names[v.status], "reasons", v.reasons, "service", "pgeventd",
	              "version", PACKAGE_VERSION, "uptime_s", (json_int_t)(now - h->started_real),
	              "started_at", json_time(h->started_real), "workers", workers_json(h), "stats",
	              stats_json(), "queue", queue_json(&s), "config",
	              config ? config : json_object(), "registry", registry_json(h->d.reg, routes));
	if (o && h->d.relay)
		json_object_set_new(o, "relay", relay_json(h->d.relay, &s));
	sample_release(&s);
	set_json(resp, v.status == ST_DOWN ? 503 : 200, o);
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
	if (!liveness_loops_turning(h->d.rt, h->d.workers, h->d.nworkers, h->d.relay, why,
	                            sizeof(why))) {
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

	sampler_read(h->sampler, &s);
	sample_release(&s); /* the list of disabled subscriptions is not used here */
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

static void route_request(void *arg, const struct http_request *req, struct http_response *resp)
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

static void add_config_key(void *arg, const char *key, const char *value, const char *def,
                           bool reloadable, const char *help)
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
	conf_visit(runtime_config(h->d.rt), add_config_key, c);
	json_t *routes = routes_json(&runtime_config(h->d.rt)->routes);
	pthread_mutex_lock(&h->lock);
	json_decref(h->config);
	h->config = c;
	json_decref(h->routes);
	h->routes = routes;
	pthread_mutex_unlock(&h->lock);
}

void health_tick(struct health *h)
{
	if (h)
		atomic_store(&h->main_beat, util_mono_s());
}

struct health *health_start(const struct health_deps *deps, char *err, size_t errlen)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->d = *deps;
	h->boot = runtime_config_refresh(deps->rt, NULL);
	h->started_real = util_real_s();
	h->started_mono = util_mono_s();
	atomic_store(&h->main_beat, util_mono_s());
	pthread_mutex_init(&h->lock, NULL);
	health_config_changed(h);
	h->sampler = sampler_new(deps->rt, deps->relay != NULL);
	if (!h->sampler) {
		snprintf(err, errlen, "out of memory");
		health_stop(h);
		return NULL;
	}

	if (h->boot->health_listen && h->boot->health_listen[0]) {
		struct httpd_options opt = { .listen = h->boot->health_listen };

		h->httpd = httpd_start(&opt, route_request, h, err, errlen);
		if (!h->httpd) {
			health_stop(h);
			return NULL;
		}
		char port[16];

		snprintf(port, sizeof(port), "%d", httpd_port(h->httpd));
		log_kv(LOG_NOTICE, "health server listening", "listen", h->boot->health_listen,
		       "port", port, NULL);
	}
	if (!sampler_start(h->sampler, err, errlen)) {
		health_stop(h);
		return NULL;
	}
	return h;
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	httpd_stop(h->httpd);
	sampler_free(h->sampler);
	json_decref(h->config);
	json_decref(h->routes);
	runtime_config_put(h->d.rt, h->boot);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
