/*
 * worker.c -- the claim loop of one worker thread.
 *
 * One batch is one transaction on the worker's connection, in two round
 * trips plus the handlers' own statements:
 *   [BEGIN; claim]          due events, oldest due first, FOR UPDATE SKIP
 *                           LOCKED;
 *   handlers                each behind a savepoint if it writes; RETRY and
 *                           dead-letter outcomes are written as they come;
 *   [OK update; queue the relayed events' deliveries; COMMIT].
 * Row locks hold for the whole batch, so a worker that dies simply lets
 * go: its rows are still unprocessed and the next claim takes them.
 *
 * The claim reads events_due_idx (due time = next_attempt_at, else
 * created_at) over the range [from, now()]: events in backoff or scheduled
 * later are never visited. `from` is where this worker's last claim ended,
 * less a second for producers whose rows commit after later ones; a full
 * claim from the start of the index runs at most every 20 times its own
 * cost (each dead index entry left by processed events costs a heap visit
 * until vacuum removes it, and a held snapshot keeps vacuum from it), so a
 * row that commits later still is found within that period.
 *
 * The claim size starts at 100 (or batch_size, if smaller) and doubles
 * while claims come back full and quick, up to batch_size: an idle queue
 * hands each event over at once, a deep backlog drains in large batches.
 * A batch also ends early once its events have used SUBXACT_BUDGET
 * savepoints, below PostgreSQL's cache of 64 subtransactions per backend
 * (past it every snapshot of the cluster pays pg_subtrans lookups); the
 * events not run stay unprocessed and come with the next claim.
 *
 * Crash accounting: before running a batch the worker counts its events
 * in pgeventd_inflight on a second, autocommit connection (sent before the
 * first handler runs, read back before the COMMIT); the batch's COMMIT
 * deletes those rows. A row left over means the process died with the
 * event in hand. Such "suspect" events are then run one per batch, so only
 * the event that kills the process accumulates runs, and one that has done
 * so max_attempts times is dead-lettered without being run again.
 *
 * Wake-ups (listen = true): see migrations/0004_claim_by_due.sql. A worker
 * whose claim found nothing tries the advisory lock SLEEP_LOCK; holding
 * it, and having claimed after taking it, it sleeps until a NOTIFY, the
 * next due time or the poll interval. Without it, it looks again soon.
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
#include "enqueue.h"
#include "telemetry.h"
#include "util.h"

#define ERRLEN 1024

/* Savepoints (subtransactions that wrote) one batch may use; PostgreSQL
 * caches 64 per backend, and handlers may take some of their own. */
#define SUBXACT_BUDGET 48
/* A claim starts at this size (or batch_size, if smaller). */
#define CLAIM_START 100
/* A batch that took longer than this does not grow the next claim. */
#define GROW_MAX_S 0.25
/* Longest wait between looks at the queue when the sleep lock is busy. */
#define SHORT_WAIT_MAX_MS 50

/* The wake-up lock of migration 0004 (also in its triggers). */
#define SLEEP_LOCK "1885824374, 2"

#define DUE "coalesce(e.next_attempt_at, e.created_at)"

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
	C_DUE,
};

/* $1 limit, $2 the claim's lower bound on the due time ('-infinity' for a
 * full claim). lag is measured from the moment the event fell due. */
static const char claim_sql[] =
    "SELECT e.id, e.event_type, e.aggregate_id, e.aggregate_type, e.payload::text,"
    " e.metadata::text, e.attempts, e.created_at, e.created_by, coalesce(m.runs, 0),"
    " greatest(extract(epoch from clock_timestamp() - " DUE "), 0)::float8, " DUE "::text"
    " FROM events e LEFT JOIN pgeventd_inflight m ON m.event_id = e.id"
    " WHERE NOT e.processed AND " DUE " >= $2::timestamptz - interval '1 second'"
    " AND " DUE " <= now()"
    " ORDER BY " DUE ", e.id"
    " LIMIT $1 FOR UPDATE OF e SKIP LOCKED";

/* Milliseconds until the next event falls due (a retry in backoff or a
 * scheduled event), NULL when none: the index's first entry after now(). */
static const char next_due_sql[] =
    "SELECT ceil(extract(epoch from min(" DUE ") - clock_timestamp()) * 1000)::bigint"
    " FROM events e WHERE NOT e.processed AND " DUE " > now()";

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
	bool savepoint; /* its handler wrote, behind a savepoint */
	double lag_s;   /* due time to handler start */
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
	struct record *recs; /* nrows records, owned */
	char *ids;           /* "{id,...}" of the batch, owned */
	char *ok_ids;        /* "{id,...}" of the OK ones, owned */
	size_t ok_len;
	char *relay_ids; /* "{id,...}" of the OK ones the relay takes, owned */
	size_t relay_len;
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
	free(b->relay_ids);
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
	if (!prepare(w->conn, "claim", claim_sql, 2, err) ||
	    !prepare(w->conn, "next_due", next_due_sql, 0, err) ||
	    !prepare(w->conn, "relay_queue", enqueue_deliveries_sql, 1, err) ||
	    !prepare(w->conn, "ok", ok_sql, 2, err) ||
	    !prepare(w->conn, "retry", retry_sql, 3, err) ||
	    !prepare(w->conn, "dead", dead_sql, 4, err) ||
	    !prepare(w->conn, "skip", skip_sql, 2, err) ||
	    !prepare(w->side, "mark", mark_sql, 1, err) ||
	    !prepare(w->side, "unmark_del", unmark_del_sql, 1, err) ||
	    !prepare(w->side, "unmark_dec", unmark_dec_sql, 1, err))
		goto fail;
	/* A new session: no wake-up lock, no time limit set yet, and a claim
	 * from the start of the index first. */
	w->sleep_lock = false;
	w->timeout_applied_ms = 0;
	w->cursor[0] = '\0';
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
		 * waking a hair early finds nothing due and sleeps again. */
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

/* Mark row `rec` OK; `relayed` also queues its deliveries at COMMIT. */
static bool record_ok(struct batch *b, struct record *rec, bool relayed, char *err)
{
	const char *id = PQgetvalue(b->claim, rec->row, C_ID);

	rec->outcome = OUT_OK;
	if (!array_add(&b->ok_ids, &b->ok_len, id) ||
	    (relayed && !array_add(&b->relay_ids, &b->relay_len, id))) {
		snprintf(err, ERRLEN, "out of memory");
		return false;
	}
	return true;
}

/* The payload (and metadata) as jansson values, for a handler with
 * HANDLER_F_JSON. NULL payload, with `msg` set, when jansson cannot hold
 * it: jsonb stores any number, jansson only 64-bit integers and finite
 * doubles. */
static json_t *parse_payload(const struct batch *b, int r, const char *handler, json_t **metadata,
                             char *msg, size_t msglen)
{
	json_error_t jerr;
	json_t *payload;

	*metadata = NULL;
	payload = json_loads(PQgetvalue(b->claim, r, C_PAYLOAD), JSON_DECODE_ANY, &jerr);
	if (!payload) {
		snprintf(msg, msglen,
		         "payload cannot be parsed for handler %s, which reads it as JSON: %s "
		         "(at character %d); jansson holds integers within 64 bits and finite "
		         "numbers only",
		         handler, jerr.text, jerr.position);
		return NULL;
	}
	if (!PQgetisnull(b->claim, r, C_METADATA))
		*metadata = json_loads(PQgetvalue(b->claim, r, C_METADATA), JSON_DECODE_ANY, &jerr);
	return payload;
}

/* handler_timeout_ms, but never more than half of stall_timeout_ms: a
 * handler stopped by its time limit must not read as a stalled loop. */
static int handler_timeout(const struct config *cfg)
{
	int half = cfg->stall_timeout_ms / 2;

	return cfg->handler_timeout_ms < half ? cfg->handler_timeout_ms : half;
}

/* Run the handler of row `rec` and record its outcome. Returns false if
 * the batch must be abandoned (connection broken or an outcome statement
 * failed), with `err`. */
static bool handle_row(struct worker *w, struct batch *b, struct record *rec, char *err)
{
	PGresult *res = b->claim;
	int r = rec->row;
	const struct config *cfg = w->cfg;
	const char *type = PQgetvalue(res, r, C_TYPE);
	const struct handler_entry *entry = NULL;
	json_t *payload = NULL, *metadata = NULL;
	struct dispatch_result dr;
	bool relayed, ok = false;
	double t0 = util_mono_s();

	rec->attempt = atoi(PQgetvalue(res, r, C_ATTEMPTS)) + 1;
	rec->type_index = registry_index(w->rt->reg, type);
	if (rec->type_index >= 0)
		entry = w->rt->reg->entries[rec->type_index];
	rec->lag_s = atof(PQgetvalue(res, r, C_LAG_S)) + (t0 - b->claim_mono);
	/* An event type may have its own handler, be handed to the relay, or
	 * both: the handler runs first, and the relay's deliveries are queued
	 * for the OK ones in one statement at the end of the batch. */
	relayed = enqueue_wants(&cfg->relay, type);
	if (!entry && !relayed) {
		char msg[256];

		snprintf(msg, sizeof(msg), "no handler registered for event type %s", type);
		rec->error = xstrdup(msg);
		if (cfg->unknown_event_policy == UNKNOWN_SKIP) {
			const char *p[2] = { PQgetvalue(res, r, C_ID), msg };

			rec->outcome = OUT_SKIPPED;
			return run(w->conn, "skip", 2, p, err);
		}
		return record_failure(w, b, rec, HANDLER_FAIL, "", 1, err);
	}
	if (!entry) {
		rec->type_index = TELEMETRY_RELAY_ONLY;
		rec->ran = true;
		return record_ok(b, rec, true, err);
	}
	if (entry->flags & HANDLER_F_JSON) {
		char msg[512];

		payload = parse_payload(b, r, entry->name, &metadata, msg, sizeof(msg));
		if (!payload) {
			rec->error = xstrdup(msg);
			return record_failure(w, b, rec, HANDLER_FAIL, entry->name, 1, err);
		}
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
	bool alive = dispatch_run(w->conn, &entry, 1, &ev, handler_timeout(cfg), &dr);

	rec->duration_ms = (util_mono_s() - t0) * 1000.0;
	rec->ran = true;
	rec->savepoint = dr.savepoint;
	if (!atomic_load(&w->failing))
		beat(w); /* a long batch turns; one that keeps failing does not */
	if (!alive) {
		db_conn_error(w->conn, err, ERRLEN);
		goto out;
	}
	if (dr.result == HANDLER_OK) {
		ok = record_ok(b, rec, relayed, err);
		goto out;
	}
	rec->error = xstrdup(dr.error);
	ok = record_failure(w, b, rec, dr.result, dr.failed ? dr.failed : "", 1, err);
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

static int claim_start(const struct config *cfg)
{
	return cfg->batch_size < CLAIM_START ? cfg->batch_size : CLAIM_START;
}

/* Adapt the next claim's size to what this one found and how long the
 * batch took. */
static void size_next_claim(struct worker *w, int claimed, double took_s)
{
	int start = claim_start(w->cfg), max = w->cfg->batch_size;

	if (claimed < w->claim_limit)
		w->claim_limit = start;
	else if (took_s < GROW_MAX_S)
		w->claim_limit = w->claim_limit * 2 > max ? max : w->claim_limit * 2;
	else if (took_s > 4 * GROW_MAX_S && w->claim_limit / 2 >= start)
		w->claim_limit /= 2;
}

/* Where the next claim starts: the end of the last one, or the start of
 * the index when a full claim is due. Sets *full. */
static const char *claim_from(struct worker *w, bool *full)
{
	*full = w->cursor[0] == '\0' || util_mono_s() >= w->next_full_claim;
	return *full ? "-infinity" : w->cursor;
}

/* After a full claim that took `cost_s`: the next one in 20 times that,
 * so they cost at most a twentieth of the time, and within 30 s. */
static void schedule_full_claim(struct worker *w, double cost_s)
{
	double gap = 20 * cost_s;

	w->next_full_claim = util_mono_s() + (gap > 30 ? 30 : gap);
}

/* Let go of the wake-up lock; false with `err` if the statement failed. */
static bool release_sleep_lock(struct worker *w, char *err)
{
	if (!w->sleep_lock)
		return true;
	w->sleep_lock = false;
	return db_exec(w->conn, "SELECT pg_advisory_unlock_all()", err, ERRLEN);
}

/* Read the crash marks' result from the side connection. */
static bool finish_mark(struct worker *w, bool *pending, char *err)
{
	PGresult *res;
	bool ok = true;

	if (!*pending)
		return true;
	*pending = false;
	while ((res = PQgetResult(w->side)) != NULL) {
		if (ok && !db_ok(w->side, res, PGRES_COMMAND_OK, err, ERRLEN))
			ok = false;
		PQclear(res);
	}
	return ok;
}

/*
 * [release the wake-up lock | set the time limit] [BEGIN] [arm] [claim]
 * in one round trip. `arm` also tries the wake-up lock ahead of the claim
 * and records in w->sleep_state what it found. Returns the claim result
 * (owned by the caller) or NULL with `err`.
 */
static PGresult *begin_and_claim(struct worker *w, bool arm, bool *full, char *err)
{
	const struct config *cfg = w->cfg;
	struct db_stmt st[5];
	PGresult *res[5];
	char limit[16], timeout[16];
	const char *claim_p[2], *timeout_p[1] = { timeout };
	int n = 0, arm_at = -1, released_at = -1;
	bool ok;

	snprintf(limit, sizeof(limit), "%d", w->claim_limit);
	claim_p[0] = limit;
	claim_p[1] = claim_from(w, full);
	if (w->sleep_lock && !arm) {
		released_at = n;
		st[n++] = (struct db_stmt){ NULL, "SELECT pg_advisory_unlock_all()", 0, NULL,
			                    PGRES_TUPLES_OK };
	}
	if (w->timeout_applied_ms != handler_timeout(cfg)) {
		snprintf(timeout, sizeof(timeout), "%d", handler_timeout(cfg));
		st[n++] = (struct db_stmt){ NULL,
			                    "SELECT set_config('statement_timeout', $1, false),"
			                    " set_config('lock_timeout', $1, false)",
			                    1, timeout_p, PGRES_TUPLES_OK };
	}
	st[n++] = (struct db_stmt){ NULL, "BEGIN", 0, NULL, PGRES_COMMAND_OK };
	if (arm && !w->sleep_lock) {
		/* mine: we hold it now; other: another worker sleeps holding it
		 * (producers notify); busy: producers hold it shared, nobody
		 * sleeps. Evaluated in this order (CASE), taken before the claim. */
		arm_at = n;
		st[n++] = (struct db_stmt){ NULL,
			                    "SELECT CASE WHEN pg_try_advisory_lock(" SLEEP_LOCK
			                    ") THEN 'mine'"
			                    " WHEN pg_try_advisory_lock_shared(" SLEEP_LOCK ")"
			                    " AND pg_advisory_unlock_shared(" SLEEP_LOCK
			                    ") THEN 'busy' ELSE 'other' END",
			                    0, NULL, PGRES_TUPLES_OK };
	}
	st[n++] = (struct db_stmt){ "claim", NULL, 2, claim_p, PGRES_TUPLES_OK };

	double t0 = util_mono_s();
	ok = db_pipeline(w->conn, st, n, res, err, ERRLEN);
	w->last_claim_full = *full;
	if (released_at >= 0)
		w->sleep_lock = false;
	if (ok)
		w->timeout_applied_ms = handler_timeout(cfg);
	if (arm_at >= 0 && res[arm_at] && PQresultStatus(res[arm_at]) == PGRES_TUPLES_OK) {
		const char *v = PQgetvalue(res[arm_at], 0, 0);

		w->sleep_state = v[0] == 'm' ? SLEEP_MINE : v[0] == 'o' ? SLEEP_OTHER : SLEEP_BUSY;
		if (w->sleep_state == SLEEP_MINE)
			w->sleep_lock = true;
	} else if (arm && w->sleep_lock) {
		w->sleep_state = SLEEP_MINE;
	}
	if (ok && *full)
		schedule_full_claim(w, util_mono_s() - t0);
	for (int i = 0; i < n - 1; i++)
		PQclear(res[i]);
	if (!ok) {
		PQclear(res[n - 1]);
		return NULL;
	}
	return res[n - 1];
}

/* [COMMIT; next due] after a claim that found nothing. */
static bool commit_empty(struct worker *w, char *err)
{
	struct db_stmt st[2] = {
		{ NULL, "COMMIT", 0, NULL, PGRES_COMMAND_OK },
		{ "next_due", NULL, 0, NULL, PGRES_TUPLES_OK },
	};
	PGresult *res[2];
	bool ok = db_pipeline(w->conn, st, 2, res, err, ERRLEN);

	if (ok && !PQgetisnull(res[1], 0, 0)) {
		int64_t due = util_mono_ms() + atoll(PQgetvalue(res[1], 0, 0)) + 5;

		if (w->next_due_ms == 0 || due < w->next_due_ms)
			w->next_due_ms = due;
	}
	PQclear(res[0]);
	PQclear(res[1]);
	return ok;
}

/* [OK update; queue deliveries; COMMIT]. *commit_sent is set when the
 * statements before COMMIT succeeded, so a failure is the COMMIT's own
 * (whose outcome may be unknown). */
static bool commit_batch(struct worker *w, struct batch *b, bool *commit_sent, char *err)
{
	const char *ok_p[2] = { b->ids, b->ok_ids ? b->ok_ids : "{}" };
	const char *relay_p[1] = { b->relay_ids };
	struct db_stmt st[3];
	PGresult *res[3];
	int n = 0;
	bool ok;

	st[n++] = (struct db_stmt){ "ok", NULL, 2, ok_p, PGRES_COMMAND_OK };
	if (b->relay_ids)
		st[n++] = (struct db_stmt){ "relay_queue", NULL, 1, relay_p, PGRES_COMMAND_OK };
	st[n++] = (struct db_stmt){ NULL, "COMMIT", 0, NULL, PGRES_COMMAND_OK };
	ok = db_pipeline(w->conn, st, n, res, err, ERRLEN);
	*commit_sent = true;
	for (int i = 0; i < n; i++) {
		if (i < n - 1 && (!res[i] || PQresultStatus(res[i]) != st[i].expect))
			*commit_sent = false;
		PQclear(res[i]);
	}
	return ok;
}

/*
 * Claim and process one batch. Returns the number of events run (0 when
 * nothing was due) or -1 on failure (logged; the transaction is rolled
 * back). Sets *more when more events may be due at once. `arm`: this claim
 * may be the last look before sleeping (see begin_and_claim).
 */
static int run_batch(struct worker *w, bool arm, bool *more)
{
	const struct config *cfg = w->cfg;
	struct batch b = { 0 };
	char err[ERRLEN] = "";
	const char *p[1];
	size_t ids_len = 0;
	bool marked = false, mark_pending = false, full = false, commit_sent = false;
	int rc = -1, subxacts = 0;
	double t_begin = util_mono_s();

	*more = false;
	b.claim = begin_and_claim(w, arm, &full, err);
	if (!b.claim)
		goto fail;
	b.nrows = PQntuples(b.claim);
	b.claim_mono = util_mono_s();
	atomic_store(&w->last_claim_at, util_real_s());
	if (b.nrows == 0) {
		PQclear(b.claim);
		b.claim = NULL;
		if (!commit_empty(w, err))
			goto fail;
		size_next_claim(w, 0, 0);
		return 0;
	}
	w->short_wait_ms = 0;
	/* Busy now: producers need not notify while this batch runs. */
	if (!release_sleep_lock(w, err))
		goto fail;
	choose_prefix(&b, w->claim_limit);
	b.recs = calloc((size_t)b.nrows, sizeof(*b.recs));
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
		/* Sent now, read back before COMMIT: the server runs it while the
		 * handlers run, and it is in its socket before any handler can
		 * take the process down. */
		p[0] = b.ids;
		if (!PQsendQueryPrepared(w->side, "mark", 1, p, NULL, NULL, 0)) {
			db_conn_error(w->side, err, ERRLEN);
			goto fail;
		}
		marked = mark_pending = true;
		for (int i = 0; i < b.n; i++) {
			if (aborting(w)) {
				snprintf(err, sizeof(err), "aborted by a second signal");
				goto fail;
			}
			if (subxacts >= SUBXACT_BUDGET) {
				/* The rest stay claimed but untouched until COMMIT, then
				 * come with the next claim. */
				b.n = i;
				b.more = true;
				break;
			}
			if (!handle_row(w, &b, &b.recs[i], err))
				goto fail;
			if (b.recs[i].savepoint)
				subxacts++;
		}
		if (!finish_mark(w, &mark_pending, err))
			goto fail;
	}
	if (aborting(w)) {
		snprintf(err, sizeof(err), "aborted by a second signal");
		goto fail;
	}
	if (!commit_batch(w, &b, &commit_sent, err)) {
		/* A failed COMMIT may or may not have committed; if not, the
		 * rows are still unprocessed and come back. */
		if (commit_sent)
			marked = false;
		goto fail;
	}
	/* The next claim starts where this batch's last event was due. */
	snprintf(w->cursor, sizeof(w->cursor), "%s", PQgetvalue(b.claim, b.n - 1, C_DUE));
	atomic_fetch_add(&stats.batches, 1);
	telemetry_batch(b.n, util_mono_s() - t_begin);
	log_outcomes(w, &b);
	size_next_claim(w, b.nrows, util_mono_s() - t_begin);
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
	if (mark_pending) {
		char ignore[ERRLEN];

		finish_mark(w, &mark_pending, ignore);
	}
	/* Never hold the wake-up lock through a failure and its back-off:
	 * every producer would notify meanwhile. */
	if (w->sleep_lock && !db_broken(w->conn)) {
		char ignore[ERRLEN];

		release_sleep_lock(w, ignore);
	}
	if (marked)
		unmark(w, b.ids);
	batch_release(&b);
	return -1;
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
	bool more = false;

	/* Refreshed every turn; a reload keeps the connection keys' running
	 * values, so every reconnect uses the same conninfo. */
	w->cfg = runtime_config_refresh(w->rt, NULL);
	w->claim_limit = claim_start(w->cfg);
	beat(w); /* the start is the reference a stall is measured from */
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
		n = run_batch(w, arm, &more);
		if (n < 0) {
			/* A failure with the connections up (a statement error, a
			 * deadlock): back off a little so a persistent one does not spin. */
			more = false;
			if (!db_broken(w->conn) && !db_broken(w->side))
				nap(w, errors < 6 ? 50 << errors++ : 3000);
			continue;
		}
		progressed(w);
		errors = 0;
		if (more || n > 0)
			continue;
		/* Nothing due from where the last claim ended: before stopping or
		 * sleeping, look once from the start of the index, for rows that
		 * committed after later ones. */
		if (!w->last_claim_full) {
			w->next_full_claim = 0;
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
