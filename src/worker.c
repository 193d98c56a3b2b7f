/*
 * worker.c -- the claim loop of one worker thread: connect (and reconnect
 * with a capped backoff), run batches (batch.c) while events are due, and
 * between them sleep until there may be work (see wait_for_work). It also
 * keeps what /health and the watchdog read of the loop: the heartbeat,
 * which moves only on progress, and the error of a failing spell.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "batch.h"
#include "claim.h"
#include "db.h"
#include "log.h"
#include "stats.h"
#include "telemetry.h"
#include "util.h"

/* Longest wait between looks at the queue when the sleep lock is busy. */
#define SHORT_WAIT_MAX_MS 50

static bool stopping(const struct worker *w)
{
	return atomic_load(&w->rt->stopping) != 0;
}

static void heartbeat_now(struct worker *w)
{
	atomic_store(&w->heartbeat, util_mono_s());
}

/* Guards every worker's last_error; never destroyed, so /health may read
 * it whatever state the worker is in. */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

/* A batch or a connection failed: the loop is not making progress (no
 * beat) until a claim completes again. /health shows `err` up to its DETAIL,
 * which may quote row values. */
void worker_set_failing(struct worker *w, const char *err)
{
	char *detail;

	pthread_mutex_lock(&error_lock);
	snprintf(w->last_error, sizeof(w->last_error), "%s", err);
	detail = strstr(w->last_error, " DETAIL: ");
	if (detail)
		*detail = '\0';
	pthread_mutex_unlock(&error_lock);
	atomic_store(&w->failing, 1);
}

void worker_event_ran(struct worker *w)
{
	/* a long batch turns; one that keeps failing does not */
	if (!atomic_load(&w->failing))
		heartbeat_now(w);
}

/* A claim cycle completed: progress, and the end of a failing spell. */
static void progressed(struct worker *w)
{
	heartbeat_now(w);
	atomic_store(&w->failing, 0);
}

void worker_last_error(const struct worker *w, char *buf, size_t len)
{
	pthread_mutex_lock(&error_lock);
	snprintf(buf, len, "%s", atomic_load(&w->failing) ? w->last_error : "");
	pthread_mutex_unlock(&error_lock);
}

static void set_connected(struct worker *w, bool up)
{
	if (atomic_exchange(&w->connected, up ? 1 : 0) != (up ? 1 : 0))
		atomic_store(&w->connected_changed_at, util_real_s());
	telemetry_connected(w->id, up);
}

/* Sleep up to ms, woken early by shutdown. Not progress: no beat. */
static void sleep_after_failure(struct worker *w, int ms)
{
	db_wait(NULL, w->rt->wake_fd, ms);
}

static void set_cancel(struct worker *w)
{
	pthread_mutex_lock(&w->cancel_lock);
	if (w->cancel)
		PQfreeCancel(w->cancel);
	w->cancel = w->conn ? PQgetCancel(w->conn) : NULL;
	pthread_mutex_unlock(&w->cancel_lock);
}

void worker_cancel(struct worker *w)
{
	char buf[256];

	pthread_mutex_lock(&w->cancel_lock);
	if (w->cancel)
		PQcancel(w->cancel, buf, sizeof(buf));
	pthread_mutex_unlock(&w->cancel_lock);
}

static void disconnect(struct worker *w)
{
	set_connected(w, false);
	pthread_mutex_lock(&w->cancel_lock);
	if (w->cancel)
		PQfreeCancel(w->cancel);
	w->cancel = NULL;
	pthread_mutex_unlock(&w->cancel_lock);
	PQfinish(w->conn);
	PQfinish(w->side);
	w->conn = NULL;
	w->side = NULL;
}

/* Open both connections, LISTEN, prepare. Logs its own failure. */
static bool connect_worker(struct worker *w)
{
	const struct config *cfg = w->cfg;
	char err[DB_ERRLEN], app[64];

	snprintf(app, sizeof(app), "pgeventd %s", w->name);
	w->conn = db_connect(conf_conninfo(cfg), app, err, sizeof(err));
	if (!w->conn)
		goto fail;
	snprintf(app, sizeof(app), "pgeventd %s marks", w->name);
	w->side = db_connect(conf_conninfo(cfg), app, err, sizeof(err));
	if (!w->side)
		goto fail;
	if (cfg->listen && !db_exec(w->conn, "LISTEN pgeventd_events", err, sizeof(err)))
		goto fail;
	if (!claim_prepare(w->conn, cfg, err, sizeof(err)) ||
	    !batch_prepare(w->conn, w->side, err, sizeof(err)))
		goto fail;
	/* A new session: no wake-up lock, no time limit set yet, and a claim
	 * from the start of the index first. */
	w->sleep_lock = false;
	w->rearm = false;
	w->timeout_applied_ms = 0;
	w->cursor[0] = '\0';
	set_cancel(w);
	set_connected(w, true);
	return true;
fail:
	log_kv(LOG_WARNING, "database connection failed", "worker", w->name, "error", err, NULL);
	worker_set_failing(w, err);
	disconnect(w);
	return false;
}

/* Connect, backing off from 100 ms to 30 s between tries; gives up only
 * when the process stops. */
static bool reconnect(struct worker *w, bool first)
{
	int delay = 0;

	while (!stopping(w)) {
		if (connect_worker(w)) {
			if (!first) {
				atomic_fetch_add(&stats.db_reconnects, 1);
				telemetry_reconnect();
				log_kv(LOG_NOTICE, "database reconnected", "worker", w->name, NULL);
			}
			return true;
		}
		/* The database is out of reach: /health says so (degraded, then
		 * down) and /health/ready fails, but the loop is alive and doing
		 * the one useful thing, so liveness and the watchdog stay fed --
		 * restarting the process would not bring the database back. A
		 * loop that is connected and still cannot complete a batch (a
		 * missing grant, say) is what reads as stalled. */
		heartbeat_now(w);
		delay = backoff_reconnect_ms(delay, 100, 30000);
		sleep_after_failure(w, delay);
	}
	return false;
}

/* Milliseconds to wait before the next claim: the poll interval, or less
 * when an event falls due sooner. */
static int wait_ms(struct worker *w, int cap_ms)
{
	int64_t ms = cap_ms;

	if (w->next_due_ms) {
		int64_t until = w->next_due_ms - util_mono_ms();

		if (until < 0)
			until = 0;
		if (until < ms)
			ms = until;
	}
	return (int)ms;
}

/* Whether libpq already holds a notification (read while it waited for a
 * result): poll() cannot see those. Frees them. */
static bool notified_already(struct worker *w)
{
	PGnotify *n;
	bool any = false;

	if (!w->cfg->listen || !PQconsumeInput(w->conn))
		return false;
	while ((n = PQnotifies(w->conn)) != NULL) {
		PQfreemem(n);
		any = true;
	}
	return any;
}

/*
 * After a claim that found nothing: sleep until there may be work. Holding
 * the wake-up lock (or with listen off), until a NOTIFY, the next due time,
 * the poll interval, the stop wake-up or a SIGHUP that publishes a new
 * configuration; the wait is cut into slices of at most a second so that a
 * new poll_interval_ms (or any other key) applies at once. Without the
 * lock, the next claim comes sooner: within a second when another worker
 * sleeps holding it (its NOTIFYs reach this one too), within
 * SHORT_WAIT_MAX_MS while producers hold it.
 */
static void wait_for_work(struct worker *w)
{
	int64_t until;
	int cap;

	/* A SIGHUP during the batch just run must shape this wait already. */
	w->cfg = runtime_config_refresh(w->rt, w->cfg);
	if (notified_already(w))
		return;
	cap = w->cfg->poll_interval_ms;
	if (w->cfg->listen && !w->sleep_lock) {
		if (w->sleep_state == SLEEP_BUSY) {
			w->short_wait_ms = w->short_wait_ms ? w->short_wait_ms * 2 : 1;
			if (w->short_wait_ms > SHORT_WAIT_MAX_MS)
				w->short_wait_ms = SHORT_WAIT_MAX_MS;
			cap = w->short_wait_ms < cap ? w->short_wait_ms : cap;
		} else if (cap > 1000) {
			cap = 1000;
		}
	}
	until = util_mono_ms() + wait_ms(w, cap);
	for (;;) {
		int64_t left = until - util_mono_ms();
		int rc;

		if (left <= 0 || stopping(w) || !runtime_config_current(w->rt, w->cfg))
			return;
		heartbeat_now(w); /* waiting is progress: the loop turns */
		rc = db_wait(w->cfg->listen ? w->conn : NULL, w->rt->wake_fd,
		             (int)(left > 1000 ? 1000 : left));
		if (rc != 0) {
			/* a NOTIFY (or a broken connection: handled by the caller) */
			if (rc > 0)
				db_drain_notifies(w->conn);
			return;
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int errors = 0;
	bool more = false;

	/* Refreshed every turn; a reload keeps the connection keys' running
	 * values, so every reconnect uses the same conninfo. */
	w->cfg = runtime_config_refresh(w->rt, NULL);
	w->claim_limit = claim_start(w->cfg);
	heartbeat_now(w); /* the start is the reference a stall is measured from */
	if (!reconnect(w, true))
		goto out;
	log_kv(LOG_INFO, "worker started", "worker", w->name, NULL);
	while (!stopping(w)) {
		bool arm;
		int n;

		w->cfg = runtime_config_refresh(w->rt, w->cfg);
		/* A reloaded batch_size applies to the next claim. */
		if (w->claim_limit > w->cfg->batch_size || w->claim_limit < claim_start(w->cfg))
			w->claim_limit = claim_start(w->cfg);
		if (db_broken(w->conn) || db_broken(w->side)) {
			log_kv(LOG_WARNING, "database connection lost", "worker", w->name, NULL);
			disconnect(w);
			if (!reconnect(w, false))
				break;
			continue;
		}
		/* A wake-up time that has passed is spent: this claim serves it,
		 * and retries recorded now must be able to set a later one. */
		if (w->next_due_ms && w->next_due_ms <= util_mono_ms())
			w->next_due_ms = 0;
		/* A claim that may find nothing is the last look before a sleep:
		 * it takes the wake-up lock first. */
		arm = w->cfg->listen && !w->rt->once && !more;
		n = batch_run(w, arm, &more);
		if (n < 0) {
			/* A failure with the connections up (a statement error, a
			 * deadlock): back off a little so a persistent one does not spin. */
			more = false;
			if (!db_broken(w->conn) && !db_broken(w->side))
				sleep_after_failure(w, errors < 6 ? 50 << errors++ : 3000);
			continue;
		}
		progressed(w);
		errors = 0;
		if (more || n > 0) {
			w->rearm = false;
			continue;
		}
		/* Woken for nothing (another worker took it): look again holding
		 * the wake-up lock before sleeping on. */
		if (w->rearm) {
			w->rearm = false;
			continue;
		}
		/* Nothing due from where the last claim ended: before stopping or
		 * sleeping, look once from the start of the index, for rows that
		 * committed after later ones. */
		if (!w->last_claim_full) {
			w->next_full_claim = 0;
			w->last_look = true;
			continue;
		}
		if (w->rt->once)
			break;
		wait_for_work(w);
	}
	log_kv(LOG_INFO, "worker stopped", "worker", w->name, NULL);
out:
	runtime_config_put(w->rt, w->cfg);
	w->cfg = NULL;
	log_thread_done();
	atomic_fetch_add(&w->rt->finished, 1);
	return NULL;
}

bool worker_start(struct worker *w, int id, struct runtime *rt)
{
	int rc;

	/* w is zeroed by the caller (calloc): /health may already read its
	 * atomics, so it is not cleared again here. */
	w->id = id;
	w->rt = rt;
	snprintf(w->name, sizeof(w->name), "worker-%d", id);
	pthread_mutex_init(&w->cancel_lock, NULL);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc != 0) {
		log_kv(LOG_ERROR, "cannot start worker thread", "worker", w->name, "error",
		       strerror(rc), NULL);
		pthread_mutex_destroy(&w->cancel_lock);
		return false;
	}
	return true;
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
	disconnect(w);
	pthread_mutex_destroy(&w->cancel_lock);
}
