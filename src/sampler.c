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

/* How late the queue is: how long the oldest due event has been due (an
 * event in backoff or scheduled for later is not late). min() reads the
 * claim index (events_due_idx) from its start: cheap whatever the backlog;
 * a due key of an ordered type counts from when its head fell due.
 * The count reads the whole index and may hit the timeout on a huge
 * backlog; the age alone still tells how late the queue is. */
static const char oldest_sql[] =
    "SELECT coalesce(extract(epoch from now() - least((SELECT min(coalesce(next_attempt_at,"
    " created_at)) FROM events WHERE NOT processed AND pgeventd_key IS NULL"
    " AND coalesce(next_attempt_at, created_at) <= now()),"
    " (SELECT min(due_at) FROM pgeventd_keys WHERE due_at <= now()))), 0)::float8";
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

/* Update `s` from the database; the figures that cannot be read are
 * marked unknown, and `valid` says whether the queue age was read. */
static void take_sample(struct sampler *sp, PGconn *conn, struct sample *s)
{
	char err[256] = "";
	char names[sizeof(s->pending_names)];
	PGresult *res = query_one_row(conn, oldest_sql, err, sizeof(err));
	int n;

	s->valid = res != NULL;
	if (res) {
		s->oldest_age_s = atof(PQgetvalue(res, 0, 0));
		s->at = util_real_s();
		PQclear(res);
	}
	s->pending = -1;
	if (!db_broken(conn) && (res = query_one_row(conn, pending_sql, err, sizeof(err)))) {
		s->pending = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->dead_letters = -1;
	if (!db_broken(conn) &&
	    ((res = query_one_row(conn, dead_sql, err, sizeof(err))) ||
	     (res = query_one_row(conn, dead_estimate_sql, err, sizeof(err))))) {
		s->dead_letters = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	s->deliveries_pending = s->deliveries_dead = -1;
	if (sp->relay_on && !db_broken(conn) &&
	    (res = query_one_row(conn, deliveries_sql, err, sizeof(err)))) {
		s->deliveries_pending = atoll(PQgetvalue(res, 0, 0));
		s->deliveries_dead = atoll(PQgetvalue(res, 0, 1));
		PQclear(res);
		telemetry_deliveries_pending((double)s->deliveries_pending);
	}
	if (sp->relay_on && !db_broken(conn)) {
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
		s.disabled = NULL; /* sp->sample still owns the old list */

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
		json_t *old = sp->sample.disabled;
		sp->sample = s;
		pthread_mutex_unlock(&sp->lock);
		json_decref(old);
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
	pthread_mutex_unlock(&sp->lock);
}

void sample_release(struct sample *sample)
{
	json_decref(sample->disabled);
	sample->disabled = NULL;
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
	runtime_config_put(sp->rt, sp->boot);
	pthread_cond_destroy(&sp->stop_cond);
	pthread_mutex_destroy(&sp->stop_lock);
	pthread_mutex_destroy(&sp->lock);
	free(sp);
}
