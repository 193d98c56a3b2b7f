/*
 * worker.c -- the claim loop of one worker thread.
 *
 * One batch is one transaction on the worker's connection:
 *   BEGIN; claim (FOR UPDATE SKIP LOCKED, FIFO); run each handler (behind
 *   a savepoint if it writes); record RETRY/dead-letter outcomes as they
 *   come; mark the OK ones processed in one statement; COMMIT.
 * Row locks hold for the whole batch, so a worker that dies simply lets
 * go: its rows are still unprocessed and the next claim takes them.
 *
 * Crash accounting: before running a batch the worker counts its events
 * in pgeventd_inflight on a second, autocommit connection; the batch's
 * COMMIT deletes those rows. A row left over means the process died with
 * the event in hand. Such "suspect" events are then run one per batch, so
 * only the event that kills the process accumulates runs, and one that
 * has done so max_attempts times is dead-lettered without being run again.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "db.h"
#include "dispatch.h"
#include "log.h"
#include "stats.h"
#include "handlers/relay.h"
#include "telemetry.h"
#include "util.h"

#define ERRLEN 1024

/* Claim columns, in order. */
enum {
	C_ID,
	C_TYPE,
	C_AGG_ID,
	C_AGG_TYPE,
	C_PAYLOAD,
	C_METADATA,
	C_ATTEMPTS,
	C_CREATED_AT,
	C_CREATED_BY,
	C_PRIOR_RUNS,
	C_LAG_S,
};

static const char claim_sql[] =
    "SELECT e.id, e.event_type, e.aggregate_id, e.aggregate_type, e.payload::text,"
    " e.metadata::text, e.attempts, e.created_at, e.created_by, coalesce(m.runs, 0),"
    " extract(epoch from clock_timestamp() - e.created_at)::float8"
    " FROM events e LEFT JOIN pgeventd_inflight m ON m.event_id = e.id"
    " WHERE NOT e.processed AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= now())"
    " ORDER BY e.created_at, e.id"
    " LIMIT $1 FOR UPDATE OF e SKIP LOCKED";

/* $1 every id of the batch (their crash marks go), $2 the ids handled OK. */
static const char ok_sql[] =
    "WITH m AS (DELETE FROM pgeventd_inflight WHERE event_id = ANY($1::uuid[]))"
    " UPDATE events SET processed = true, processed_at = now(), attempts = attempts + 1,"
    " last_error = NULL, next_attempt_at = NULL"
    " WHERE id = ANY($2::uuid[])";

/* $1 id, $2 delay in ms, $3 error */
static const char retry_sql[] =
    "UPDATE events SET attempts = attempts + 1, last_error = $3,"
    " next_attempt_at = clock_timestamp() + $2::bigint * interval '1 millisecond'"
    " WHERE id = $1";

/* $1 id, $2 error, $3 handler name, $4 attempts this outcome adds */
static const char dead_sql[] =
    "WITH e AS (UPDATE events SET processed = true, processed_at = now(),"
    " attempts = attempts + $4::int, last_error = $2, next_attempt_at = NULL"
    " WHERE id = $1 RETURNING id, event_type, payload, attempts, created_at)"
    " INSERT INTO event_dead_letters (event_id, event_type, payload, error_message,"
    " retry_count, original_created_at, handler, attempts)"
    " SELECT id, event_type, payload, $2, greatest(attempts - 1, 0), created_at, $3, attempts"
    " FROM e";

/* $1 id, $2 note */
static const char skip_sql[] =
    "UPDATE events SET processed = true, processed_at = now(), attempts = attempts + 1,"
    " last_error = $2, next_attempt_at = NULL WHERE id = $1";

static const char mark_sql[] =
    "INSERT INTO pgeventd_inflight (event_id, runs) SELECT unnest($1::uuid[]), 1"
    " ON CONFLICT (event_id) DO UPDATE SET runs = pgeventd_inflight.runs + 1, last_at = now()";
static const char unmark_del_sql[] =
    "DELETE FROM pgeventd_inflight WHERE event_id = ANY($1::uuid[]) AND runs <= 1";
static const char unmark_dec_sql[] =
    "UPDATE pgeventd_inflight SET runs = runs - 1 WHERE event_id = ANY($1::uuid[])";

enum outcome { OUT_OK, OUT_RETRY, OUT_DEAD, OUT_SKIPPED };
static const char *const outcome_names[] = { "ok", "retry", "dead_letter", "skipped" };
static const enum telemetry_outcome tm_outcome[] = { TM_OK, TM_RETRY, TM_DEAD_LETTER, TM_SKIPPED };

/* What happened to one event of the batch, logged after COMMIT. */
struct record {
	int row;        /* row of the claim result */
	int type_index; /* registry index of its type, -1 if none */
	bool ran;       /* its handler ran: duration_ms and lag_s are set */
	double lag_s;   /* created_at to handler start */
	enum outcome outcome;
	int attempt;
	int64_t delay_ms; /* RETRY */
	double duration_ms;
	char *error; /* malloc'd, or NULL */
};

struct batch {
	PGresult *claim;     /* owned */
	double claim_mono;   /* monotonic seconds when the claim returned */
	int nrows;           /* rows claimed */
	int n;               /* rows taken into this batch (a prefix) */
	bool more;           /* more may be due at once */
	struct record *recs; /* n records, owned */
	char *ids;           /* "{id,...}" of the batch, owned */
	char *ok_ids;        /* "{id,...}" of the OK ones, owned */
	size_t ok_len;
};

static void batch_release(struct batch *b)
{
	PQclear(b->claim);
	if (b->recs)
		for (int i = 0; i < b->n; i++)
			free(b->recs[i].error);
	free(b->recs);
	free(b->ids);
	free(b->ok_ids);
	memset(b, 0, sizeof(*b));
}

static bool stopping(const struct worker *w)
{
	return atomic_load(&w->rt->stopping) != 0;
}

static bool aborting(const struct worker *w)
{
	return atomic_load(&w->rt->aborting) != 0;
}

static void beat(struct worker *w)
{
	atomic_store(&w->heartbeat, util_mono_s());
}

/* Guards every worker's last_error; never destroyed, so /health may read
 * it whatever state the worker is in. */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

/* A batch or a connection failed: the loop is not making progress (no
 * beat) until a claim completes again. /health shows `err` up to its DETAIL,
 * which may quote row values. */
static void set_failing(struct worker *w, const char *err)
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

/* A claim cycle completed: progress, and the end of a failing spell. */
static void progressed(struct worker *w)
{
	beat(w);
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
static void nap(struct worker *w, int ms)
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

static bool prepare(PGconn *conn, const char *name, const char *sql, int nparams, char *err)
{
	PGresult *res = PQprepare(conn, name, sql, nparams, NULL);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, ERRLEN);

	PQclear(res);
	return ok;
}

/* Open both connections, LISTEN, prepare. Logs its own failure. */
static bool connect_worker(struct worker *w)
{
	const struct config *cfg = w->cfg;
	char err[ERRLEN], app[64];

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
	if (!prepare(w->conn, "claim", claim_sql, 1, err) ||
	    !prepare(w->conn, "ok", ok_sql, 2, err) ||
	    !prepare(w->conn, "retry", retry_sql, 3, err) ||
	    !prepare(w->conn, "dead", dead_sql, 4, err) ||
	    !prepare(w->conn, "skip", skip_sql, 2, err) ||
	    !prepare(w->side, "mark", mark_sql, 1, err) ||
	    !prepare(w->side, "unmark_del", unmark_del_sql, 1, err) ||
	    !prepare(w->side, "unmark_dec", unmark_dec_sql, 1, err))
		goto fail;
	set_cancel(w);
	set_connected(w, true);
	return true;
fail:
	log_kv(LOG_WARNING, "database connection failed", "worker", w->name, "error", err, NULL);
	set_failing(w, err);
	disconnect(w);
	return false;
}

/* Connect, backing off from 100 ms to 30 s between tries; gives up only
 * when the process stops. */
static bool reconnect(struct worker *w, bool first)
{
	int delay = 100;

	while (!stopping(w)) {
		if (connect_worker(w)) {
			if (!first) {
				atomic_fetch_add(&stats.db_reconnects, 1);
				telemetry_reconnect();
				log_kv(LOG_NOTICE, "database reconnected", "worker", w->name, NULL);
			}
			return true;
		}
		nap(w, delay);
		delay = delay * 2 > 30000 ? 30000 : delay * 2;
	}
	return false;
}

/* Append `s` to a growing "{a,b,c}" array literal. */
static bool array_add(char **buf, size_t *len, const char *s)
{
	size_t sl = strlen(s), need = *len + sl + 3;
	char *nb = realloc(*buf, need);

	if (!nb)
		return false;
	if (*len == 0) {
		nb[0] = '{';
		*len = 1;
	} else {
		nb[*len - 1] = ','; /* replace the closing brace */
	}
	memcpy(nb + *len, s, sl);
	*len += sl;
	nb[(*len)++] = '}';
	nb[*len] = '\0';
	*buf = nb;
	return true;
}

static PGresult *exec_prepared(PGconn *conn, const char *name, int n, const char *const *params)
{
	return PQexecPrepared(conn, name, n, params, NULL, NULL, 0);
}

/* Run a prepared statement that returns no rows; false on error, with `err`. */
static bool run(PGconn *conn, const char *name, int n, const char *const *params, char *err)
{
	PGresult *res = exec_prepared(conn, name, n, params);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, ERRLEN);

	PQclear(res);
	return ok;
}

/* Take back this batch's crash marks after a rollback we chose (the
 * events were not run to the end, but the process did not die either). */
static void unmark(struct worker *w, const char *ids)
{
	const char *p[1] = { ids };
	char err[ERRLEN];

	if (!ids || db_broken(w->side))
		return;
	if (!run(w->side, "unmark_del", 1, p, err) || !run(w->side, "unmark_dec", 1, p, err))
		log_kv(LOG_WARNING, "could not clear crash marks", "worker", w->name, "error", err,
		       NULL);
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Record RETRY or dead letter for row `r` (inside the transaction). */
static bool record_failure(struct worker *w, struct batch *b, struct record *rec,
                           enum handler_result hr, const char *handler, int added_attempts,
                           char *err)
{
	const struct config *cfg = w->cfg;
	const char *id = PQgetvalue(b->claim, rec->row, C_ID);

	if (hr == HANDLER_RETRY && rec->attempt < cfg->max_attempts) {
		char delay[32];
		const char *p[3] = { id, delay, rec->error };

		rec->outcome = OUT_RETRY;
		rec->delay_ms = backoff_delay_ms(&cfg->backoff, rec->attempt, backoff_random());
		snprintf(delay, sizeof(delay), "%lld", (long long)rec->delay_ms);
		if (!run(w->conn, "retry", 3, p, err))
			return false;
		/* The server set next_attempt_at from its clock while the statement
		 * ran; taking our clock after the reply keeps our wake-up at or after
		 * that moment, so the claim then finds the event due. The clock is
		 * read in whole milliseconds (truncated) and a local reply takes
		 * less than one, so a few milliseconds of margin make up for it:
		 * waking a hair early finds nothing due and sleeps a poll interval. */
		int64_t due = util_mono_ms() + rec->delay_ms + 5;
		if (w->next_due_ms == 0 || due < w->next_due_ms)
			w->next_due_ms = due;
		return true;
	}
	if (hr == HANDLER_RETRY) {
		/* Out of attempts: say so, keeping the last error. */
		char *msg;

		if (asprintf(&msg, "gave up after %d attempts: %s", rec->attempt, rec->error) >=
		    0) {
			free(rec->error);
			rec->error = msg;
		}
	}
	char added[16];
	const char *p[4] = { id, rec->error, handler, added };

	snprintf(added, sizeof(added), "%d", added_attempts);
	rec->outcome = OUT_DEAD;
	return run(w->conn, "dead", 4, p, err);
}

/* Build the parsed view of row `r` and run its handler; records the
 * outcome. Returns false if the batch must be abandoned (connection
 * broken or an outcome statement failed), with `err`. */
static bool handle_row(struct worker *w, struct batch *b, struct record *rec, char *err)
{
	PGresult *res = b->claim;
	int r = rec->row;
	const struct config *cfg = w->cfg;
	const char *type = PQgetvalue(res, r, C_TYPE);
	const struct handler_entry *entry = NULL;
	json_error_t jerr;
	json_t *payload = NULL, *metadata = NULL;
	char hmsg[DISPATCH_ERROR_MAX];
	enum handler_result hr;
	bool ok = false;

	rec->attempt = atoi(PQgetvalue(res, r, C_ATTEMPTS)) + 1;
	rec->type_index = registry_index(w->rt->reg, type);
	if (rec->type_index >= 0)
		entry = w->rt->reg->entries[rec->type_index];
	/* An event type may have its own handler, be handed to the relay, or
	 * both: they run in that order behind one savepoint. */
	const struct handler_entry *run_list[2];
	size_t nrun = 0;

	if (entry)
		run_list[nrun++] = entry;
	if (relay_wants(&cfg->relay, type)) {
		run_list[nrun++] = &relay_entry;
		if (!entry)
			rec->type_index = TELEMETRY_RELAY_ONLY;
	}
	if (nrun == 0) {
		char msg[256];

		snprintf(msg, sizeof(msg), "no handler registered for event type %s", type);
		if (cfg->unknown_event_policy == UNKNOWN_SKIP) {
			const char *p[2] = { PQgetvalue(res, r, C_ID), msg };

			rec->outcome = OUT_SKIPPED;
			rec->error = xstrdup(msg);
			return run(w->conn, "skip", 2, p, err);
		}
		rec->error = xstrdup(msg);
		return record_failure(w, b, rec, HANDLER_FAIL, "", 1, err);
	}

	payload = json_loads(PQgetvalue(res, r, C_PAYLOAD), JSON_DECODE_ANY, &jerr);
	if (!PQgetisnull(res, r, C_METADATA))
		metadata = json_loads(PQgetvalue(res, r, C_METADATA), JSON_DECODE_ANY, &jerr);
	if (!payload) {
		/* jsonb always prints valid JSON; this is jansson's limit
		 * (e.g. nesting depth), so the event can never be handled. */
		char msg[512];

		snprintf(msg, sizeof(msg), "payload cannot be parsed: %s", jerr.text);
		rec->error = xstrdup(msg);
		ok = record_failure(w, b, rec, HANDLER_FAIL, run_list[0]->name, 1, err);
		goto out;
	}

	struct event ev = {
		.id = PQgetvalue(res, r, C_ID),
		.event_type = type,
		.aggregate_id = PQgetisnull(res, r, C_AGG_ID) ? NULL : PQgetvalue(res, r, C_AGG_ID),
		.aggregate_type =
		    PQgetisnull(res, r, C_AGG_TYPE) ? NULL : PQgetvalue(res, r, C_AGG_TYPE),
		.payload = payload,
		.payload_text = PQgetvalue(res, r, C_PAYLOAD),
		.metadata = metadata,
		.created_at = PQgetvalue(res, r, C_CREATED_AT),
		.created_by =
		    PQgetisnull(res, r, C_CREATED_BY) ? NULL : PQgetvalue(res, r, C_CREATED_BY),
		.attempt = rec->attempt,
	};
	double t0 = util_mono_s();
	const char *failed = NULL;
	bool alive = dispatch_run(w->conn, run_list, nrun, &ev, &hr, &failed, hmsg, sizeof(hmsg));

	rec->duration_ms = (util_mono_s() - t0) * 1000.0;
	rec->ran = true;
	rec->lag_s = atof(PQgetvalue(res, r, C_LAG_S)) + (t0 - b->claim_mono);
	if (!atomic_load(&w->failing))
		beat(w); /* a long batch turns; one that keeps failing does not */
	if (!alive) {
		db_conn_error(w->conn, err, ERRLEN);
		goto out;
	}
	if (hr == HANDLER_OK) {
		rec->outcome = OUT_OK;
		const char *id = PQgetvalue(res, r, C_ID);
		ok = array_add(&b->ok_ids, &b->ok_len, id);
		if (!ok)
			snprintf(err, ERRLEN, "out of memory");
		goto out;
	}
	rec->error = xstrdup(hmsg);
	ok = record_failure(w, b, rec, hr, failed ? failed : "", 1, err);
out:
	json_decref(payload);
	json_decref(metadata);
	return ok;
}

static void log_outcomes(struct worker *w, const struct batch *b)
{
	double now = util_real_s();

	for (int i = 0; i < b->n; i++) {
		const struct record *rec = &b->recs[i];
		char attempt[16], dur[32], delay[32];
		enum log_level lvl = rec->outcome == OUT_OK        ? LOG_INFO
		                     : rec->outcome == OUT_DEAD    ? LOG_ERROR
		                     : rec->outcome == OUT_SKIPPED ? LOG_NOTICE
		                                                   : LOG_WARNING;

		switch (rec->outcome) {
		case OUT_OK:
			atomic_fetch_add(&stats.succeeded, 1);
			break;
		case OUT_RETRY:
			atomic_fetch_add(&stats.retried, 1);
			break;
		case OUT_DEAD:
			atomic_fetch_add(&stats.dead_lettered, 1);
			break;
		case OUT_SKIPPED:
			atomic_fetch_add(&stats.skipped, 1);
			break;
		}
		atomic_fetch_add(&stats.processed, 1);
		telemetry_event(rec->type_index, tm_outcome[rec->outcome],
		                rec->ran ? rec->duration_ms / 1000.0 : -1, rec->lag_s);
		if (!log_enabled(lvl))
			continue;
		snprintf(attempt, sizeof(attempt), "%d", rec->attempt);
		snprintf(dur, sizeof(dur), "%.3f", rec->duration_ms);
		snprintf(delay, sizeof(delay), "%lld", (long long)rec->delay_ms);
		log_kv(lvl, "event handled", "worker", w->name, "event_id",
		       PQgetvalue(b->claim, rec->row, C_ID), "event_type",
		       PQgetvalue(b->claim, rec->row, C_TYPE), "attempt", attempt, "duration_ms",
		       dur, "outcome", outcome_names[rec->outcome], "retry_in_ms",
		       rec->outcome == OUT_RETRY ? delay : NULL, "error",
		       rec->error && rec->error[0] ? rec->error : NULL, NULL);
	}
	atomic_store(&stats.last_processed_at, now);
}

/* Pick the prefix of the claimed rows to run now: everything up to the
 * first suspect (an event whose last run never finished), or the suspect
 * alone when it comes first. */
static void choose_prefix(struct batch *b, int limit)
{
	int k = -1;

	for (int i = 0; i < b->nrows; i++) {
		if (atoi(PQgetvalue(b->claim, i, C_PRIOR_RUNS)) > 0) {
			k = i;
			break;
		}
	}
	b->n = k < 0 ? b->nrows : (k == 0 ? 1 : k);
	b->more = b->nrows == limit || b->n < b->nrows;
}

/*
 * Claim and process one batch. Returns the number of events run (0 when
 * nothing was due) or -1 on failure (logged; the transaction is rolled
 * back). Sets *more when more events may be due at once.
 */
static int run_batch(struct worker *w, bool *more)
{
	const struct config *cfg = w->cfg;
	struct batch b = { 0 };
	char err[ERRLEN] = "", limit[16];
	const char *p[2];
	size_t ids_len = 0;
	bool marked = false;
	int rc = -1;
	double t_begin = util_mono_s();

	*more = false;
	snprintf(limit, sizeof(limit), "%d", cfg->batch_size);
	if (!db_exec(w->conn, "BEGIN", err, sizeof(err)))
		goto fail;
	p[0] = limit;
	b.claim = exec_prepared(w->conn, "claim", 1, p);
	if (!db_ok(w->conn, b.claim, PGRES_TUPLES_OK, err, sizeof(err)))
		goto fail;
	b.nrows = PQntuples(b.claim);
	b.claim_mono = util_mono_s();
	atomic_store(&w->last_claim_at, util_real_s());
	if (b.nrows == 0) {
		PQclear(b.claim);
		b.claim = NULL;
		if (!db_exec(w->conn, "COMMIT", err, sizeof(err)))
			goto fail;
		return 0;
	}
	choose_prefix(&b, cfg->batch_size);
	b.recs = calloc(b.n > 0 ? (size_t)b.n : 1, sizeof(*b.recs));
	if (!b.recs) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (int i = 0; i < b.n; i++) {
		b.recs[i].row = i;
		b.recs[i].type_index = -1;
		if (!array_add(&b.ids, &ids_len, PQgetvalue(b.claim, i, C_ID))) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
	}

	int prior = atoi(PQgetvalue(b.claim, 0, C_PRIOR_RUNS));
	if (prior >= cfg->max_attempts) {
		/* b.n == 1: this event took the process down max_attempts times. */
		struct record *rec = &b.recs[0];
		char msg[512];

		rec->attempt = atoi(PQgetvalue(b.claim, 0, C_ATTEMPTS)) + prior;
		snprintf(msg, sizeof(msg),
		         "handler crashed: the process died %d times while handling this event "
		         "(or lost its database connection); not run again",
		         prior);
		rec->error = xstrdup(msg);
		rec->type_index = registry_index(w->rt->reg, PQgetvalue(b.claim, 0, C_TYPE));
		const struct handler_entry *e =
		    rec->type_index >= 0 ? w->rt->reg->entries[rec->type_index] : NULL;
		if (!record_failure(w, &b, rec, HANDLER_FAIL, e ? e->name : "", prior, err))
			goto fail;
	} else {
		p[0] = b.ids;
		if (!run(w->side, "mark", 1, p, err))
			goto fail;
		marked = true;
		for (int i = 0; i < b.n; i++) {
			if (aborting(w)) {
				snprintf(err, sizeof(err), "aborted by a second signal");
				goto fail;
			}
			if (!handle_row(w, &b, &b.recs[i], err))
				goto fail;
		}
	}
	p[0] = b.ids;
	p[1] = b.ok_ids ? b.ok_ids : "{}";
	if (!run(w->conn, "ok", 2, p, err))
		goto fail;
	if (aborting(w)) {
		snprintf(err, sizeof(err), "aborted by a second signal");
		goto fail;
	}
	if (!db_exec(w->conn, "COMMIT", err, sizeof(err))) {
		/* The batch may or may not have committed; if not, its rows are
		 * still unprocessed and come back. */
		marked = false;
		goto fail;
	}
	atomic_fetch_add(&stats.batches, 1);
	telemetry_batch(b.n, util_mono_s() - t_begin);
	log_outcomes(w, &b);
	*more = b.more;
	rc = b.n;
	batch_release(&b);
	return rc;
fail:
	if (aborting(w))
		log_kv(LOG_NOTICE, "batch rolled back", "worker", w->name, "reason", err, NULL);
	else
		log_kv(LOG_WARNING, "batch failed, rolled back", "worker", w->name, "error", err,
		       NULL);
	set_failing(w, err);
	if (!db_broken(w->conn)) {
		char ignore[ERRLEN];

		db_exec(w->conn, "ROLLBACK", ignore, sizeof(ignore));
	}
	if (marked)
		unmark(w, b.ids);
	batch_release(&b);
	return -1;
}

/* Milliseconds to wait before the next claim. */
static int wait_ms(struct worker *w)
{
	int64_t ms = w->cfg->poll_interval_ms;

	if (w->next_due_ms) {
		int64_t until = w->next_due_ms - util_mono_ms();

		if (until < 0)
			until = 0;
		if (until < ms)
			ms = until;
	}
	return (int)ms;
}

/*
 * Sleep until a NOTIFY, a retry falls due, the poll interval passes, the
 * stop wake-up, or a SIGHUP publishes a new configuration: the wait is cut
 * into slices of at most a second so that a shorter poll_interval_ms (or
 * any other key) applies at once rather than after a long old interval.
 */
static void wait_for_work(struct worker *w)
{
	int64_t until;

	/* A SIGHUP during the batch just run must shape this wait already. */
	w->cfg = runtime_config_refresh(w->rt, w->cfg);
	until = util_mono_ms() + wait_ms(w);
	for (;;) {
		int64_t left = until - util_mono_ms();
		int rc;

		if (left <= 0 || stopping(w) || !runtime_config_current(w->rt, w->cfg))
			return;
		beat(w); /* waiting is progress: the loop turns */
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

	/* Refreshed every turn; a reload keeps the connection keys' running
	 * values, so every reconnect uses the same conninfo. */
	w->cfg = runtime_config_refresh(w->rt, NULL);
	beat(w); /* the start is the reference a stall is measured from */
	if (!reconnect(w, true))
		goto out;
	log_kv(LOG_INFO, "worker started", "worker", w->name, NULL);
	while (!stopping(w)) {
		bool more = false;
		int n;

		w->cfg = runtime_config_refresh(w->rt, w->cfg);
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
		n = run_batch(w, &more);
		if (n < 0) {
			/* A failure with the connections up (a statement error, a
			 * deadlock): back off a little so a persistent one does not spin. */
			if (!db_broken(w->conn) && !db_broken(w->side))
				nap(w, errors < 6 ? 50 << errors++ : 3000);
			continue;
		}
		progressed(w);
		errors = 0;
		if (more)
			continue;
		if (n == 0 && w->rt->once)
			break;
		if (w->rt->once)
			continue;
		wait_for_work(w);
	}
	log_kv(LOG_INFO, "worker stopped", "worker", w->name, NULL);
out:
	runtime_config_put(w->rt, w->cfg);
	w->cfg = NULL;
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
