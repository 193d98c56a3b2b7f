/* sampler.c -- the thread that reads the queue figures every SAMPLER_INTERVAL_S (sampler.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "figures.h"
#include "log.h"
#include "migrate.h"
#include "telemetry.h"
#include "util.h"

struct sampler {
	struct runtime *rt; /* borrowed */
	/* A reference to the configuration at start: the connection string
	 * and the packs need a restart, so they never change. */
	const struct config *boot;
	bool relay_on;

	pthread_mutex_t lock; /* sample */
	struct sample sample;

	pthread_t thread;
	bool started;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stop; /* under stop_lock */
};

/* A query that returns one row; NULL with err otherwise. */
static PGresult *query_one_row(PGconn *conn, const char *sql, char *err, size_t errlen)
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

/* A row of figures_subscriptions_sql that is failing, for /health. */
static json_t *failing_json(const PGresult *res, int i)
{
	const char *paused = PQgetvalue(res, i, 6);

	return json_pack("{s:s, s:I, s:s, s:s?, s:s}", "name", PQgetvalue(res, i, 0),
	                 "consecutive_failures", (json_int_t)atoll(PQgetvalue(res, i, 4)),
	                 "failing_since", PQgetvalue(res, i, 5), "paused_until",
	                 paused[0] ? paused : NULL, "last_error", PQgetvalue(res, i, 7));
}

/* Update `s` from the database; the figures that cannot be read are
 * marked unknown, and `valid` says whether the queue age was read. */
static void take_sample(struct sampler *sp, PGconn *conn, struct sample *s)
{
	char err[256] = "";
	char names[sizeof(s->pending_names)];
	PGresult *res = query_one_row(conn, figures_events_oldest_due_sql, err, sizeof(err));
	int n;

	s->valid = res != NULL;
	if (res) {
		s->oldest_age_s = atof(PQgetvalue(res, 0, 0));
		s->at = util_real_s();
		PQclear(res);
	}
	s->pending = -1;
	if (!db_broken(conn) &&
	    (res = query_one_row(conn, figures_events_pending_sql, err, sizeof(err)))) {
		s->pending = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->dead_letters = -1;
	if (!db_broken(conn) &&
	    ((res = query_one_row(conn, figures_dead_letters_sql, err, sizeof(err))) ||
	     (res = query_one_row(conn, figures_dead_letters_estimate_sql, err, sizeof(err))))) {
		s->dead_letters = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->deliveries_pending = s->deliveries_dead = -1;
	if (sp->relay_on && !db_broken(conn) &&
	    (res = query_one_row(conn, figures_deliveries_sql, err, sizeof(err)))) {
		s->deliveries_pending = atoll(PQgetvalue(res, 0, 0));
		s->deliveries_dead = atoll(PQgetvalue(res, 0, 1));
		PQclear(res);
		telemetry_deliveries_pending((double)s->deliveries_pending);
	}
	if (sp->relay_on && !db_broken(conn)) {
		res = PQexec(conn, figures_subscriptions_sql);
		if (db_ok(conn, res, PGRES_TUPLES_OK, err, sizeof(err))) {
			s->disabled = json_array();
			s->failing = json_array();
			for (int i = 0; i < PQntuples(res); i++) {
				bool enabled = PQgetvalue(res, i, 1)[0] == 't';
				long long failures = atoll(PQgetvalue(res, i, 4));

				if (enabled && failures > 0)
					json_array_append_new(s->failing, failing_json(res, i));

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
		n = migrate_pending(conn, sp->boot, names, sizeof(names), err, sizeof(err));
		if (n >= 0) {
			s->migrations_pending = n;
			snprintf(s->pending_names, sizeof(s->pending_names), "%s", names);
		}
	}
	snprintf(s->error, sizeof(s->error), "%s", err);
}

/* Wait up to `seconds` for the stop flag; true when stopping. */
static bool wait_or_stop(struct sampler *sp, int seconds)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += seconds;
	pthread_mutex_lock(&sp->stop_lock);
	while (!sp->stop) {
		if (pthread_cond_timedwait(&sp->stop_cond, &sp->stop_lock, &ts) == ETIMEDOUT)
			break;
	}
	stop = sp->stop;
	pthread_mutex_unlock(&sp->stop_lock);
	return stop;
}

static void *sampler_main(void *arg)
{
	struct sampler *sp = arg;
	PGconn *conn = NULL;
	bool told = false;

	do {
		struct sample s;
		char err[256] = "";

		pthread_mutex_lock(&sp->lock);
		s = sp->sample;
		pthread_mutex_unlock(&sp->lock);
		s.disabled = s.failing = NULL; /* sp->sample still owns the old lists */

		if (db_broken(conn)) {
			PQfinish(conn);
			conn = db_connect(conf_conninfo(sp->boot), "pgeventd health", err,
			                  sizeof(err));
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
			take_sample(sp, conn, &s);
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
		pthread_mutex_lock(&sp->lock);
		json_t *old = sp->sample.disabled, *old_failing = sp->sample.failing;
		sp->sample = s;
		pthread_mutex_unlock(&sp->lock);
		json_decref(old);
		json_decref(old_failing);
	} while (!wait_or_stop(sp, SAMPLER_INTERVAL_S));
	PQfinish(conn);
	return NULL;
}

struct sampler *sampler_new(struct runtime *rt, bool relay_on)
{
	struct sampler *sp = calloc(1, sizeof(*sp));
	pthread_condattr_t ca;

	if (!sp)
		return NULL;
	sp->rt = rt;
	sp->boot = runtime_config_refresh(rt, NULL);
	sp->relay_on = relay_on;
	/* run checked the migrations just before starting us */
	sp->sample.migrations_pending = 0;
	sp->sample.deliveries_pending = sp->sample.deliveries_dead = -1;
	snprintf(sp->sample.error, sizeof(sp->sample.error), "starting");
	pthread_mutex_init(&sp->lock, NULL);
	pthread_mutex_init(&sp->stop_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->stop_cond, &ca);
	pthread_condattr_destroy(&ca);
	return sp;
}

bool sampler_start(struct sampler *sp, char *err, size_t errlen)
{
	if (pthread_create(&sp->thread, NULL, sampler_main, sp) != 0) {
		snprintf(err, errlen, "cannot start the queue sampler thread");
		return false;
	}
	sp->started = true;
	return true;
}

void sampler_read(struct sampler *sp, struct sample *out)
{
	pthread_mutex_lock(&sp->lock);
	*out = sp->sample;
	out->disabled = json_deep_copy(out->disabled); /* ours now; NULL stays NULL */
	out->failing = json_deep_copy(out->failing);
	pthread_mutex_unlock(&sp->lock);
}

void sample_release(struct sample *sample)
{
	json_decref(sample->disabled);
	json_decref(sample->failing);
	sample->disabled = sample->failing = NULL;
}

void sampler_free(struct sampler *sp)
{
	if (!sp)
		return;
	if (sp->started) {
		pthread_mutex_lock(&sp->stop_lock);
		sp->stop = true;
		pthread_cond_signal(&sp->stop_cond);
		pthread_mutex_unlock(&sp->stop_lock);
		pthread_join(sp->thread, NULL);
	}
	json_decref(sp->sample.disabled);
	json_decref(sp->sample.failing);
	runtime_config_put(sp->rt, sp->boot);
	pthread_cond_destroy(&sp->stop_cond);
	pthread_mutex_destroy(&sp->stop_lock);
	pthread_mutex_destroy(&sp->lock);
	free(sp);
}
