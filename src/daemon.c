/*
 * daemon.c -- `pgeventd run`: wait for the database and a current schema,
 * start the workers, the relay, the health server and retention, then
 * take signals (SIGHUP re-reads the configuration, a first SIGTERM or
 * SIGINT finishes the batches in hand, a second rolls them back) and
 * supervise the threads until they have all returned.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backoff.h"
#include "db.h"
#include "handlers/registry.h"
#include "health.h"
#include "log.h"
#include "migrate.h"
#include "notify.h"
#include "relay.h"
#include "reload.h"
#include "retention.h"
#include "routes.h"
#include "runtime.h"
#include "supervisor.h"
#include "telemetry.h"
#include "util.h"
#include "worker.h"

/* run --once gives up on a database it cannot reach for this long: at
 * start, and for a worker that lost its connection (doc/pgeventd.8). */
#define ONCE_GIVE_UP_MS 30000

/* The first database connection is retried after this, doubling up to
 * the cap: a database that is still starting is normal under systemd. */
#define CONNECT_RETRY_FIRST_MS 200
#define CONNECT_RETRY_CAP_MS   10000

/* Everything the run holds; the threads borrow from it. */
struct daemon {
	const char *config_path; /* what a SIGHUP re-reads; borrowed, may be NULL */
	bool once;               /* run --once */
	struct runtime rt;       /* owns the configuration in force */
	struct registry reg;
	sigset_t sigs;    /* SIGTERM, SIGINT, SIGHUP: blocked, taken by sigtimedwait */
	int wake_pipe[2]; /* written once stopping: wakes every thread's wait; owned */
	int nworkers;
	struct worker *workers;      /* nworkers slots; owned */
	int started;                 /* workers whose thread runs (the first `started`) */
	struct relay *relay;         /* owned; NULL when the relay is off */
	struct retention *retention; /* owned; NULL for run --once */
	struct health *health;       /* owned; NULL for run --once */
	struct supervisor sv;
};

/* Wait for the first database connection, retrying until a stop signal
 * or, when `give_up_at` (monotonic ms) is not 0, that time (logged as an
 * error). Returns NULL then. */
static PGconn *connect_startup(const struct config *cfg, const sigset_t *sigs, int64_t give_up_at)
{
	int delay = backoff_reconnect_ms(0, CONNECT_RETRY_FIRST_MS, CONNECT_RETRY_CAP_MS);
	bool told = false;

	for (;;) {
		char err[1024];
		PGconn *conn = db_connect(conf_conninfo(cfg), "pgeventd", err, sizeof(err));
		struct timespec ts;
		int64_t now;

		if (conn)
			return conn;
		if (!told || log_enabled(LOG_DEBUG))
			log_kv(LOG_WARNING, "database unavailable, retrying", "error", err, NULL);
		told = true;
		now = util_mono_ms();
		if (give_up_at && now >= give_up_at) {
			log_kv(LOG_ERROR, "database unavailable: run --once gives up", "error", err,
			       NULL);
			return NULL;
		}
		if (give_up_at && now + delay > give_up_at)
			delay = (int)(give_up_at - now);
		ts.tv_sec = delay / 1000;
		ts.tv_nsec = (long)(delay % 1000) * 1000000L;
		int sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			return NULL;
		delay = backoff_reconnect_ms(delay, CONNECT_RETRY_FIRST_MS, CONNECT_RETRY_CAP_MS);
	}
}

/*
 * Start-up's database part: connect, then check that every migration is
 * applied and unchanged. True to go on; false with the exit status in
 * `rc` (when a signal stopped it meanwhile: 0, or 69 for run --once).
 */
static bool wait_for_schema(struct daemon *d, struct config *cfg, int *rc)
{
	bool routes_ok = true;
	char err[1024], pending[1024], routes_err[1024];
	int64_t give_up_at = 0;
	int npending;

	notify_status("connecting to the database");
	/* A batch job must not hang on a database that is gone, nor report
	 * success when it never reached it: --once gives up and exits 69. */
	if (d->once)
		give_up_at = util_mono_ms() + ONCE_GIVE_UP_MS;
	for (;;) {
		PGconn *conn = connect_startup(cfg, &d->sigs, give_up_at);
		bool lost;

		if (!conn) {
			*rc = d->once ? EX_UNAVAILABLE : EX_OK;
			return false;
		}
		npending = migrate_pending(conn, cfg, pending, sizeof(pending), err, sizeof(err));
		/* Every routed function must be there, with its signature, and
		 * ours to execute: else the configuration is wrong (exit 78). */
		if (npending == 0) {
			routes_ok = routes_resolve(conn, &cfg->routes, cfg->path, routes_err,
			                           sizeof(routes_err));
			if (!routes_ok && db_broken(conn))
				npending = -1;
		}
		lost = npending == -1 && db_broken(conn);
		PQfinish(conn);
		if (!lost)
			break;
		/* The database went away between connecting and checking. */
		log_kv(LOG_WARNING, "database lost during start-up, retrying", "error", err, NULL);
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&d->sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			*rc = d->once ? EX_UNAVAILABLE : EX_OK;
			return false;
		}
	}
	if (npending < 0) {
		log_kv(LOG_ERROR, "cannot check migrations", "error", err, NULL);
		*rc = npending == MIGRATE_CHANGED ? EX_DATAERR : EX_UNAVAILABLE;
		return false;
	}
	if (npending > 0) {
		log_kv(LOG_ERROR, "migrations pending: run `pgeventd migrate` first", "pending",
		       pending, NULL);
		*rc = EX_TEMPFAIL;
		return false;
	}
	if (!routes_ok) {
		log_kv(LOG_ERROR, "configuration error: a routed function cannot be called",
		       "error", routes_err, NULL);
		*rc = EX_CONFIG;
		return false;
	}
	for (int i = 0; i < cfg->routes.n; i++)
		log_kv(LOG_INFO, "SQL route", "route", cfg->routes.items[i].call, "function",
		       cfg->routes.items[i].signature, NULL);
	return true;
}

/* Make every thread's wait return: they find rt.stopping set. */
static void wake_all(struct daemon *d)
{
	ssize_t rc;

	do {
		rc = write(d->wake_pipe[1], "x", 1);
	} while (rc < 0 && errno == EINTR);
}

/*
 * Start the relay, the health server and retention (not for run --once),
 * then the workers, and tell systemd the daemon is ready. False with the
 * exit status in `rc` when one of the first could not start; when a
 * worker cannot, true with `rc` EX_SOFTWARE and the ones started told to
 * stop, for the main loop to wait for.
 */
static bool start_threads(struct daemon *d, const struct config *cfg, int *rc)
{
	struct health_deps hd;
	char err[1024];

	if (pipe2(d->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_kv(LOG_ERROR, "pipe failed", "error", strerror(errno), NULL);
		*rc = EX_SOFTWARE;
		return false;
	}
	d->rt.reg = &d->reg;
	d->rt.wake_fd = d->wake_pipe[0];
	d->rt.once = d->once;
	d->nworkers = cfg->workers;
	d->workers = calloc((size_t)d->nworkers, sizeof(*d->workers));
	if (!d->workers || !telemetry_init(&d->reg, d->nworkers, PACKAGE_VERSION)) {
		log_kv(LOG_ERROR, "out of memory", NULL);
		*rc = EX_SOFTWARE;
		return false;
	}
	routes_telemetry(NULL, &cfg->routes);
	if (cfg->relay.event_types.n > 0) {
		d->relay = relay_start(&d->rt);
		if (!d->relay) {
			*rc = EX_SOFTWARE;
			return false;
		}
	}
	hd =
	    (struct health_deps){ &d->reg, &d->rt, d->workers, d->nworkers, relay_state(d->relay) };
	supervisor_init(&d->sv, &d->rt, d->workers, d->nworkers, hd.relay);
	/* run --once is a batch job: no server (it would clash with the
	 * daemon's port), no sampler, no retention. */
	if (!d->once) {
		d->health = health_start(&hd, err, sizeof(err));
		if (!d->health) {
			log_kv(LOG_ERROR, "cannot start the health server", "error", err, NULL);
			*rc = EX_UNAVAILABLE;
			return false;
		}
		d->retention = retention_start(&d->rt);
		if (!d->retention) {
			*rc = EX_SOFTWARE;
			return false;
		}
	}
	for (int i = 0; i < d->nworkers; i++) {
		if (!worker_start(&d->workers[i], i + 1, &d->rt)) {
			*rc = EX_SOFTWARE;
			atomic_store(&d->rt.stopping, 1);
			wake_all(d);
			return true;
		}
		d->started++;
	}
	char nw[16], line[256];

	snprintf(nw, sizeof(nw), "%d", d->nworkers);
	log_kv(LOG_NOTICE, "pgeventd started", "version", PACKAGE_VERSION, "workers", nw, "listen",
	       cfg->listen ? "true" : "false", "once", d->once ? "true" : "false", NULL);
	/* The configuration is loaded, the database answered, the schema is
	 * current and the health socket listens: ready. */
	snprintf(line, sizeof(line), "running with %d workers", d->nworkers);
	supervisor_ready(&d->sv, line);
	return true;
}

/*
 * run --once: whether a worker has been without its database connection
 * for ONCE_GIVE_UP_MS (since `started_s`, wall clock, if it never had
 * one). The worker itself would retry until stopped.
 */
static bool once_worker_stranded(const struct daemon *d, double started_s)
{
	double now = util_real_s();

	for (int i = 0; i < d->started; i++) {
		double since = atomic_load(&d->workers[i].connected_changed_at);

		if (since < started_s)
			since = started_s;
		if (!atomic_load(&d->workers[i].connected) &&
		    (now - since) * 1000.0 >= (double)ONCE_GIVE_UP_MS)
			return true;
	}
	return false;
}

/* Roll back every worker's batch in hand now (a second signal, or the
 * shutdown deadline passed). */
static void roll_back_batches(struct daemon *d)
{
	atomic_store(&d->rt.aborting, 1);
	for (int i = 0; i < d->started; i++)
		worker_cancel(&d->workers[i]);
}

/*
 * The main loop: signals, the shutdown deadline, the workers and the
 * relay finishing, and systemd's watchdog. Returns when every thread it
 * waits for has returned, with the exit status (`rc` so far, or worse).
 */
static int run_until_stopped(struct daemon *d, int rc)
{
	double started_s = util_real_s();
	int64_t deadline = 0;
	bool interrupted = false; /* --once stopped before it handled everything due */

	while (atomic_load(&d->rt.finished) < d->started ||
	       (d->relay && !atomic_load(&d->rt.relay_done))) {
		struct timespec ts = { 0, 100 * 1000000L };
		int sig = sigtimedwait(&d->sigs, NULL, &ts);

		health_tick(d->health);
		if (!atomic_load(&d->rt.stopping))
			supervisor_tick(&d->sv);
		if (d->once && !atomic_load(&d->rt.stopping) &&
		    once_worker_stranded(d, started_s)) {
			log_kv(LOG_ERROR, "database unavailable: run --once gives up", NULL);
			rc = EX_UNAVAILABLE;
			atomic_store(&d->rt.stopping, 1);
			wake_all(d);
		}
		if (sig == SIGHUP) {
			notify_reloading();
			reload_config(d->config_path, &d->rt);
			health_config_changed(d->health);
			supervisor_reloaded(&d->sv);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (!atomic_load(&d->rt.stopping)) {
				interrupted = d->once && rc == EX_OK;
				log_kv(LOG_NOTICE, "shutting down: finishing the batches in hand",
				       "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
				notify_stopping("stopping: finishing the batches in hand");
				atomic_store(&d->rt.stopping, 1);
				deadline =
				    util_mono_ms() + runtime_config(&d->rt)->shutdown_timeout_ms;
				wake_all(d);
			} else if (!atomic_load(&d->rt.aborting)) {
				log_kv(LOG_WARNING,
				       "second signal: rolling back the batches in hand", NULL);
				roll_back_batches(d);
				rc = 1;
			}
		}
		/* The relay keeps its own deadline and puts back what it could not
		 * finish; only a worker's batch in hand is rolled back here. */
		if (deadline && !atomic_load(&d->rt.aborting) && util_mono_ms() > deadline &&
		    atomic_load(&d->rt.finished) < d->started) {
			log_kv(LOG_WARNING,
			       "shutdown_timeout_ms passed: rolling back the batches in hand",
			       NULL);
			roll_back_batches(d);
			rc = 1;
		}
	}
	for (int i = 0; i < d->started; i++)
		worker_join(&d->workers[i]);
	/* Not a success for a cron job: run it again (75, EX_TEMPFAIL). */
	if (interrupted && rc == EX_OK)
		rc = EX_TEMPFAIL;
	log_kv(LOG_NOTICE, "pgeventd stopped", NULL);
	return rc;
}

/* Stop what is still running (after a start-up failure) and free it all. */
static void stop_and_release(struct daemon *d)
{
	if (d->relay || d->retention) {
		/* reached directly on a start-up failure: stop them first */
		atomic_store(&d->rt.stopping, 1);
		if (d->wake_pipe[1] >= 0)
			wake_all(d);
	}
	/* /health keeps answering ("shutting down") while a retention pass
	 * delays the exit, so the relay it reports on is freed only once the
	 * server has stopped: nothing it serves is torn down under it. */
	retention_join(d->retention);
	health_stop(d->health);
	relay_join(d->relay);
	telemetry_free();
	free(d->workers);
	if (d->wake_pipe[0] >= 0) {
		close(d->wake_pipe[0]);
		close(d->wake_pipe[1]);
	}
	registry_release(&d->reg);
	runtime_release(&d->rt);
	curl_global_cleanup();
}

int daemon_run(struct config *cfg, const char *config_path, bool once)
{
	struct daemon d = { .config_path = config_path, .once = once, .wake_pipe = { -1, -1 } };
	char err[1024];
	int rc = EX_OK;

	runtime_init(&d.rt, cfg);
	log_configure(cfg->log_level, cfg->log_format);
	if (!registry_build(&d.reg, (const char *const *)cfg->packs.items, cfg->packs.n, err,
	                    sizeof(err))) {
		log_kv(LOG_ERROR, "cannot build the handler registry", "error", err, NULL);
		runtime_release(&d.rt);
		return EX_SOFTWARE;
	}
	/* Before any thread: libcurl's global state is not thread-safe. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_kv(LOG_ERROR, "curl_global_init failed", NULL);
		registry_release(&d.reg);
		runtime_release(&d.rt);
		return EX_SOFTWARE;
	}
	/* Signals are taken synchronously by this thread (sigtimedwait); the
	 * threads inherit the blocked mask and never see them. */
	sigemptyset(&d.sigs);
	sigaddset(&d.sigs, SIGTERM);
	sigaddset(&d.sigs, SIGINT);
	sigaddset(&d.sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d.sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (wait_for_schema(&d, cfg, &rc) && start_threads(&d, cfg, &rc))
		rc = run_until_stopped(&d, rc);
	stop_and_release(&d);
	return rc;
}
