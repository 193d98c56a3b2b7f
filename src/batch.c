/*
 * batch.c -- one batch of a worker: run each claimed event's handler,
 * record its outcome, commit.
 *
 * One batch is one transaction on the worker's connection, in two round
 * trips plus the handlers' own statements:
 *   [BEGIN; claim]          (claim.c)
 *   handlers                each behind a savepoint if it writes; RETRY and
 *                           dead-letter outcomes are written as they come;
 *   [OK update; queue the relayed events' deliveries; COMMIT].
 * Row locks hold for the whole batch, so a worker that dies simply lets
 * go: its rows are still unprocessed and the next claim takes them.
 *
 * A batch ends early once its events have used SUBXACT_BUDGET savepoints,
 * below PostgreSQL's cache of 64 subtransactions per backend (past it every
 * snapshot of the cluster pays pg_subtrans lookups); the events not run
 * stay unprocessed and come with the next claim.
 *
 * Crash accounting: before running a batch the worker counts its events
 * in pgeventd_inflight on a second, autocommit connection (sent before the
 * first handler runs, read back before the COMMIT); the batch's COMMIT
 * deletes those rows. A row left over means the process died with the
 * event in hand. Such "suspect" events are then run one per batch, so only
 * the event that kills the process accumulates runs, and one that has done
 * so max_attempts times is dead-lettered without being run again.
 *
 * Ordered event types (ordering.*, migrations/0007_ordering.sql): the
 * claim also returns due keys, locked, with their first events, and the
 * events admission left to this batch (claim.c). The batch runs a key's
 * events in order and stops at the first that does not succeed (RETRY, or
 * a dead letter that parks the key); before COMMIT it queues the admitted
 * events it did not run to the end under their key (queue_sql), then
 * records each key's new head due time, parks it, or deletes it
 * (keys_sql). A configuration without ordered types takes none of these
 * paths.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backoff.h"
#include "claim.h"
#include "db.h"
#include "dispatch.h"
#include "enqueue.h"
#include "log.h"
#include "routes.h"
#include "ordering.h"
#include "stats.h"
#include "telemetry.h"
#include "util.h"

/* Savepoints (subtransactions that wrote) one batch may use; PostgreSQL
 * caches 64 per backend, and handlers may take some of their own. */
#define SUBXACT_BUDGET 48

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

/* Admitted events this batch did not run to success: $1 ids, $2 their
 * keys. They join their key's queue, and the key gets its row (keys_sql
 * then sets its due time, or parks it). */
static const char queue_sql[] =
    "WITH q AS (UPDATE events e SET pgeventd_key = u.key"
    "  FROM unnest($1::uuid[], $2::text[]) AS u (id, key) WHERE e.id = u.id RETURNING u.key)"
    " INSERT INTO pgeventd_keys (key, due_at) SELECT DISTINCT key, now() FROM q ORDER BY 1"
    " ON CONFLICT (key) DO NOTHING";

/*
 * After a batch ran keys $1 (all it holds): park $2 behind the
 * dead-lettered heads $3 (block policy), and give every other key its new
 * head's due time, or delete it when its queue is empty. Reads the batch's
 * own outcomes (this statement follows them). The due time is an upsert:
 * should the key's row have gone meanwhile (deleted by a batch that saw its
 * queue empty), a key with queued events gets it back -- no queued event is
 * ever left without its key's row (queue_sql's DO NOTHING relies on it:
 * every key it queues under is in $1).
 */
static const char keys_sql[] =
    "WITH p AS (UPDATE pgeventd_keys k SET due_at = NULL, parked_event = u.id,"
    "  parked_at = now() FROM unnest($2::text[], $3::uuid[]) AS u (key, id)"
    "  WHERE k.key = u.key RETURNING k.key),"
    " h AS (SELECT t.key, (SELECT coalesce(e.next_attempt_at, e.created_at) FROM events e"
    "  WHERE e.pgeventd_key = t.key AND NOT e.processed ORDER BY e.created_at, e.id LIMIT 1)"
    "  AS due FROM unnest($1::text[]) AS t (key) WHERE t.key NOT IN (SELECT key FROM p)),"
    " gone AS (DELETE FROM pgeventd_keys k USING h WHERE k.key = h.key AND h.due IS NULL)"
    " INSERT INTO pgeventd_keys AS k (key, due_at) SELECT h.key, h.due FROM h"
    " WHERE h.due IS NOT NULL ORDER BY 1"
    " ON CONFLICT (key) DO UPDATE SET due_at = excluded.due_at WHERE k.parked_event IS NULL";

enum outcome { OUT_OK, OUT_RETRY, OUT_DEAD, OUT_SKIPPED };

/* What a claimed row is to the batch. */
enum row_kind {
	ROW_RUN,      /* an unordered event: run it */
	ROW_KEYED,    /* an event of a key this batch holds: run it in its key's order */
	ROW_ADMITTED, /* an ordered event admission left to this batch: the same */
	ROW_EMPTY,    /* a key this batch holds with nothing queued: delete it */
};
static const char *const outcome_names[] = { "ok", "retry", "dead_letter", "skipped" };
static const enum telemetry_outcome tm_outcome[] = { TM_OK, TM_RETRY, TM_DEAD_LETTER, TM_SKIPPED };

/* What happened to one event of the batch, logged after COMMIT. */
struct record {
	int row; /* row of the claim result */
	enum row_kind kind;
	bool done;      /* its outcome was recorded (else it did not run: logged nowhere) */
	bool marked;    /* counted in pgeventd_inflight by this batch, not yet taken back */
	int type_index; /* registry index of its type, -1 if none */
	bool ran;       /* its handler ran: duration_ms and lag_s are set */
	bool savepoint; /* its handler wrote, behind a savepoint */
	double lag_s;   /* due time to handler start */
	enum outcome outcome;
	int attempt;
	int64_t delay_ms; /* RETRY */
	double duration_ms;
	char *error; /* malloc'd, or NULL */
	/* A SQL route's event (routes.c): the pattern that matched, its metrics
	 * label (borrowed from the batch's configuration); whether its run of
	 * the route was tried in one statement, and returned. */
	const char *route_pattern;
	bool group_tried, group_ok;
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
	/* Ordered types only. */
	char *left_ids; /* uuid[] of admitted events not run to success, owned */
	size_t left_ids_len;
	char *left_keys; /* their keys, owned */
	size_t left_keys_len;
	int admitted_rows; /* rows admission left to this batch */
	char *keys;        /* text[] of every key the claim holds, owned */
	size_t keys_len;
	char *park_keys; /* text[] of keys to park, owned */
	size_t park_keys_len;
	char *park_ids; /* uuid[] of their dead-lettered heads, owned */
	size_t park_ids_len;
	int unordered_rows; /* rows of the unordered claim (they come first) */
	int nkeys;          /* keys the claim holds */
	/* The suspect run alone, or -1: when it is row 0, the batch is that
	 * row; a key's head further down (ordered rows come after every
	 * unordered one) makes the batch that row only, the rows before it
	 * left untouched. */
	int alone;
};

static void batch_release(struct batch *b)
{
	PQclear(b->claim);
	if (b->recs)
		for (int i = 0; i < b->nrows; i++)
			free(b->recs[i].error);
	free(b->recs);
	free(b->ids);
	free(b->ok_ids);
	free(b->relay_ids);
	free(b->keys);
	free(b->left_ids);
	free(b->left_keys);
	free(b->park_keys);
	free(b->park_ids);
	memset(b, 0, sizeof(*b));
}

static bool aborting(const struct worker *w)
{
	return atomic_load(&w->rt->aborting) != 0;
}

bool batch_prepare(PGconn *conn, PGconn *side, char *err, size_t errlen)
{
	return db_prepare(conn, "relay_queue", enqueue_deliveries_sql, 1, err, errlen) &&
	       db_prepare(conn, "ok", ok_sql, 2, err, errlen) &&
	       db_prepare(conn, "retry", retry_sql, 3, err, errlen) &&
	       db_prepare(conn, "dead", dead_sql, 4, err, errlen) &&
	       db_prepare(conn, "skip", skip_sql, 2, err, errlen) &&
	       db_prepare(conn, "keys", keys_sql, 3, err, errlen) &&
	       db_prepare(conn, "queue", queue_sql, 2, err, errlen) &&
	       db_prepare(side, "mark", mark_sql, 1, err, errlen) &&
	       db_prepare(side, "unmark_del", unmark_del_sql, 1, err, errlen) &&
	       db_prepare(side, "unmark_dec", unmark_dec_sql, 1, err, errlen);
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

/* The same, quoting `s` as an array element: keys are any text. */
static bool array_add_quoted(char **buf, size_t *len, const char *s)
{
	size_t sl = strlen(s);
	char *q = malloc(2 * sl + 3), *o = q;
	bool ok;

	if (!q)
		return false;
	*o++ = '"';
	for (const char *c = s; *c; c++) {
		if (*c == '"' || *c == '\\')
			*o++ = '\\';
		*o++ = *c;
	}
	*o++ = '"';
	*o = '\0';
	ok = array_add(buf, len, q);
	free(q);
	return ok;
}

static PGresult *exec_prepared(PGconn *conn, const char *name, int n, const char *const *params)
{
	return PQexecPrepared(conn, name, n, params, NULL, NULL, 0);
}

/* Run a prepared statement that returns no rows; false on error, with `err`. */
static bool exec_outcome(PGconn *conn, const char *name, int n, const char *const *params,
                         char *err)
{
	PGresult *res = exec_prepared(conn, name, n, params);
	bool ok = db_ok(conn, res, PGRES_COMMAND_OK, err, DB_ERRLEN);

	PQclear(res);
	return ok;
}

/* Take back this batch's crash marks after a rollback we chose (the
 * events were not run to the end, but the process did not die either). */
static void unmark(struct worker *w, const char *ids)
{
	const char *p[1] = { ids };
	char err[DB_ERRLEN];

	if (!ids || db_broken(w->side))
		return;
	if (!exec_outcome(w->side, "unmark_del", 1, p, err) ||
	    !exec_outcome(w->side, "unmark_dec", 1, p, err))
		log_kv(LOG_WARNING, "could not clear crash marks", "worker", w->name, "error", err,
		       NULL);
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
		if (!exec_outcome(w->conn, "retry", 3, p, err))
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
	return exec_outcome(w->conn, "dead", 4, p, err);
}

/* Mark row `rec` OK; `relayed` also queues its deliveries at COMMIT. */
static bool record_ok(struct batch *b, struct record *rec, bool relayed, char *err)
{
	const char *id = PQgetvalue(b->claim, rec->row, C_ID);

	rec->outcome = OUT_OK;
	if (!array_add(&b->ok_ids, &b->ok_len, id) ||
	    (relayed && !array_add(&b->relay_ids, &b->relay_len, id))) {
		snprintf(err, DB_ERRLEN, "out of memory");
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

/* The route that takes row `i`, when no C handler does. */
static const struct route *row_route(const struct worker *w, const struct batch *b, int i,
                                     const char **pattern)
{
	const char *type = PQgetvalue(b->claim, i, C_TYPE);

	if (registry_index(w->rt->reg, type) >= 0)
		return NULL;
	return routes_match(&w->cfg->routes, type, pattern);
}

/* Most events of a run called in one statement: the statement is under
 * the handler time limit as a whole, so a long run of slow calls would
 * time out together and then run again one by one. */
#define ROUTE_GROUP_MAX 256

/*
 * Row `rec` is the first of a run of consecutive rows that route `rt`
 * takes: call its function for the whole run (at most ROUTE_GROUP_MAX)
 * in one statement (one round trip, one savepoint) instead of one per
 * event. When every call returns,
 * the rows are OK; when one fails, nothing of the run remains and each
 * row is then run alone, to find its own outcome.
 */
static void run_route_group(struct worker *w, struct batch *b, struct record *rec,
                            const struct route *rt)
{
	char *ids = NULL;
	size_t len = 0;
	int end = rec->row;
	bool wrote = false;
	double t0 = util_mono_s();

	/* The run ends before a row the batch holds back: an ordered event
	 * not due yet holds its key (batch_run), and running it here would
	 * leave its writes standing while it stays unprocessed. */
	while (end < b->n && end - rec->row < ROUTE_GROUP_MAX && row_route(w, b, end, NULL) == rt &&
	       b->recs[end].kind != ROW_EMPTY &&
	       (b->recs[end].kind == ROW_RUN || PQgetvalue(b->claim, end, C_DUE_NOW)[0] == 't'))
		end++;
	for (int k = rec->row; k < end; k++)
		b->recs[k].group_tried = true;
	if (end - rec->row < 2)
		return;
	for (int k = rec->row; k < end; k++)
		if (!array_add(&ids, &len, PQgetvalue(b->claim, k, C_ID))) {
			free(ids);
			return;
		}
	bool ok = routes_call_group(w->conn, rt, ids, &wrote);
	double each_ms = (util_mono_s() - t0) * 1000.0 / (end - rec->row);

	free(ids);
	rec->savepoint = wrote;
	if (!ok)
		return;
	for (int k = rec->row; k < end; k++) {
		b->recs[k].group_ok = true;
		b->recs[k].duration_ms = each_ms;
	}
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
	if (!entry) {
		/* A SQL route (routes.c) runs behind the same savepoint as a C
		 * handler; a run of events it takes goes in one statement first. */
		const struct route *rt = routes_match(&cfg->routes, type, &rec->route_pattern);

		if (rt && rt->entry.fn) {
			entry = &rt->entry;
			if (!rec->group_tried)
				run_route_group(w, b, rec, rt);
			if (db_broken(w->conn)) {
				db_conn_error(w->conn, err, DB_ERRLEN);
				return false;
			}
			if (rec->group_ok) {
				rec->ran = true;
				worker_event_ran(w);
				return record_ok(b, rec, enqueue_wants(&cfg->relay, type), err);
			}
		}
	}
	/* An event type may have its own handler, be handed to the relay, or
	 * both: the handler runs first, and the relay's deliveries are queued
	 * for the OK ones in one statement at the end of the batch. */
	relayed = enqueue_wants(&cfg->relay, type);
	if (!entry && !relayed) {
		char msg[256];

		snprintf(msg, sizeof(msg), "no handler registered for event type %s", type);
		rec->error = util_strdup(msg);
		if (cfg->unknown_event_policy == UNKNOWN_SKIP) {
			const char *p[2] = { PQgetvalue(res, r, C_ID), msg };

			rec->outcome = OUT_SKIPPED;
			return exec_outcome(w->conn, "skip", 2, p, err);
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
			rec->error = util_strdup(msg);
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
	bool alive = dispatch_run(w->conn, &entry, 1, &ev, claim_handler_timeout(cfg), &dr);

	rec->duration_ms = (util_mono_s() - t0) * 1000.0;
	rec->ran = true;
	rec->savepoint = dr.savepoint;
	worker_event_ran(w);
	if (!alive) {
		db_conn_error(w->conn, err, DB_ERRLEN);
		goto out;
	}
	if (dr.result == HANDLER_OK) {
		ok = record_ok(b, rec, relayed, err);
		goto out;
	}
	rec->error = util_strdup(dr.error);
	ok = record_failure(w, b, rec, dr.result, dr.failed ? dr.failed : "", 1, err);
out:
	json_decref(payload);
	json_decref(metadata);
	return ok;
}

static void log_outcomes(struct worker *w, const struct batch *b)
{
	double now = util_real_s();

	log_hold();
	for (int i = 0; i < b->n; i++) {
		const struct record *rec = &b->recs[i];
		char attempt[16], dur[32], delay[32];

		if (!rec->done)
			continue;
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
		if (rec->route_pattern)
			telemetry_route_event(rec->route_pattern, tm_outcome[rec->outcome],
			                      rec->ran ? rec->duration_ms / 1000.0 : -1,
			                      rec->lag_s);
		else
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
	log_release();
	atomic_store(&stats.last_processed_at, now);
}

/* Whether row `i` is its key's first in the claim: the key's head (a
 * key's rows are adjacent, in its order). */
static bool key_head(const struct batch *b, int i)
{
	return i == 0 || PQgetisnull(b->claim, i - 1, C_KEY) ||
	       strcmp(PQgetvalue(b->claim, i - 1, C_KEY), PQgetvalue(b->claim, i, C_KEY)) != 0;
}

/* Whether row `i` is in the batch's prefix but not run (another row runs
 * alone). */
static bool left_out(const struct batch *b, int i)
{
	return b->alone >= 0 && i != b->alone;
}

/*
 * Pick the rows to run now: everything up to the first suspect (an event
 * whose last run never finished), or the suspect alone when it comes first
 * -- or, for an ordered event, when it is its key's head: a key's rows come
 * after every unordered row, so waiting for it to come first would starve
 * it (and its key) while unordered events flow. A suspect further down its
 * key runs once the rows before it have. A keyed row not due now is no
 * suspect: it does not run in this batch.
 */
static void choose_prefix(struct batch *b, int limit)
{
	int k = -1;

	b->alone = -1;
	for (int i = 0; i < b->nrows; i++) {
		if (b->recs[i].kind == ROW_EMPTY ||
		    (b->recs[i].kind != ROW_RUN && PQgetvalue(b->claim, i, C_DUE_NOW)[0] != 't'))
			continue;
		if (atoi(PQgetvalue(b->claim, i, C_PRIOR_RUNS)) > 0) {
			k = i;
			break;
		}
	}
	if (k < 0) {
		b->n = b->nrows;
	} else if (k == 0 || (b->recs[k].kind != ROW_RUN && key_head(b, k))) {
		b->alone = k;
		b->n = k + 1;
	} else {
		b->n = k;
	}
	b->more = b->unordered_rows == limit || b->nkeys == limit || b->admitted_rows == limit ||
	          b->n < b->nrows || b->alone > 0;
}

/* Sort the claimed rows into kinds (all ROW_RUN without ordered types);
 * every key the claim holds goes into b->keys, for keys_sql at COMMIT. */
static bool classify_rows(struct batch *b, char *err)
{
	const PGresult *res = b->claim;
	const char *last_key = NULL;

	b->unordered_rows = 0;
	b->admitted_rows = 0;
	b->nkeys = 0;
	for (int i = 0; i < b->nrows; i++) {
		struct record *rec = &b->recs[i];

		rec->row = i;
		rec->type_index = -1;
		rec->kind = ROW_RUN;
		if (PQgetisnull(res, i, C_KEY)) {
			b->unordered_rows++;
			continue;
		}
		const char *key = PQgetvalue(res, i, C_KEY);

		if (PQgetvalue(res, i, C_ADMITTED)[0] == 't') {
			rec->kind = ROW_ADMITTED;
			b->admitted_rows++;
			continue; /* its key has no row yet: queue_sql adds it if need be */
		}
		rec->kind = PQgetisnull(res, i, C_ID) ? ROW_EMPTY : ROW_KEYED;
		if (!last_key || strcmp(last_key, key) != 0) {
			last_key = key;
			b->nkeys++;
			if (!array_add_quoted(&b->keys, &b->keys_len, key)) {
				snprintf(err, DB_ERRLEN, "out of memory");
				return false;
			}
		}
	}
	return true;
}

/* The admitted events not run to success (left over: not run, RETRY,
 * dead letter) join their key's queue at COMMIT; their keys go to keys_sql
 * with the others. Rows of a key are adjacent. */
static bool collect_left(struct batch *b, char *err)
{
	const char *last_key = NULL;

	for (int i = 0; i < b->nrows; i++) {
		const struct record *rec = &b->recs[i];
		const char *key = PQgetvalue(b->claim, i, C_KEY);

		if (rec->kind != ROW_ADMITTED ||
		    (i < b->n && rec->done &&
		     (rec->outcome == OUT_OK || rec->outcome == OUT_SKIPPED)))
			continue;
		if (!array_add(&b->left_ids, &b->left_ids_len, PQgetvalue(b->claim, i, C_ID)) ||
		    !array_add_quoted(&b->left_keys, &b->left_keys_len, key))
			goto oom;
		if (!last_key || strcmp(last_key, key) != 0) {
			last_key = key;
			if (!array_add_quoted(&b->keys, &b->keys_len, key))
				goto oom;
		}
	}
	return true;
oom:
	snprintf(err, DB_ERRLEN, "out of memory");
	return false;
}

/* After row `rec` of a key ran: whether the key's later events in this
 * batch may run. A RETRY holds the key (its head waits in backoff); a dead
 * letter parks it unless its type's policy is skip. */
static bool key_goes_on(const struct worker *w, struct batch *b, const struct record *rec,
                        char *err)
{
	const char *type = PQgetvalue(b->claim, rec->row, C_TYPE);

	if (rec->outcome == OUT_OK || rec->outcome == OUT_SKIPPED)
		return true;
	if (rec->outcome == OUT_DEAD && ordering_skips_dead(&w->cfg->ordering, type))
		return true;
	if (rec->outcome == OUT_DEAD &&
	    (!array_add_quoted(&b->park_keys, &b->park_keys_len,
	                       PQgetvalue(b->claim, rec->row, C_KEY)) ||
	     !array_add(&b->park_ids, &b->park_ids_len, PQgetvalue(b->claim, rec->row, C_ID))))
		snprintf(err, DB_ERRLEN, "out of memory");
	return false;
}

/* The "{id,...}" of the rows still marked by this batch (NULL if none, or
 * out of memory: then the marks stay, as after a crash). */
static char *marked_ids(const struct batch *b)
{
	char *ids = NULL;
	size_t len = 0;

	for (int i = 0; i < b->nrows; i++)
		if (b->recs[i].marked &&
		    !array_add(&ids, &len, PQgetvalue(b->claim, b->recs[i].row, C_ID))) {
			free(ids);
			return NULL;
		}
	return ids;
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
		if (ok && !db_ok(w->side, res, PGRES_COMMAND_OK, err, DB_ERRLEN))
			ok = false;
		PQclear(res);
	}
	return ok;
}

/* Row `i`'s key is held (RETRY, or parked): its later rows in the batch
 * will not run, so take back their crash marks now -- should the process
 * die later in the batch, they must not count as runs that never
 * finished. */
static bool unmark_held(struct worker *w, struct batch *b, int i, bool *pending, char *err)
{
	const char *key = PQgetvalue(b->claim, i, C_KEY);
	char *ids = NULL;
	size_t len = 0;

	for (int j = i + 1; j < b->n; j++) {
		if (PQgetisnull(b->claim, j, C_KEY) || strcmp(PQgetvalue(b->claim, j, C_KEY), key))
			break;
		if (!b->recs[j].marked)
			continue;
		if (!array_add(&ids, &len, PQgetvalue(b->claim, j, C_ID))) {
			free(ids);
			snprintf(err, DB_ERRLEN, "out of memory");
			return false;
		}
	}
	if (!ids)
		return true;
	if (!finish_mark(w, pending, err)) {
		free(ids);
		return false;
	}
	unmark(w, ids);
	free(ids);
	for (int j = i + 1; j < b->n && !PQgetisnull(b->claim, j, C_KEY) &&
	                    strcmp(PQgetvalue(b->claim, j, C_KEY), key) == 0;
	     j++)
		b->recs[j].marked = false;
	return true;
}

/* [OK update; queue deliveries; COMMIT]. *commit_sent is set when the
 * statements before COMMIT succeeded, so a failure is the COMMIT's own
 * (whose outcome may be unknown). */
static bool commit_batch(struct worker *w, struct batch *b, bool *commit_sent, char *err)
{
	const char *ok_p[2] = { b->ids ? b->ids : "{}", b->ok_ids ? b->ok_ids : "{}" };
	const char *relay_p[1] = { b->relay_ids };
	const char *queue_p[2] = { b->left_ids, b->left_keys };
	const char *keys_p[3] = { b->keys, b->park_keys ? b->park_keys : "{}",
		                  b->park_ids ? b->park_ids : "{}" };
	struct db_stmt st[5];
	PGresult *res[5];
	int n = 0;
	bool ok;

	st[n++] = (struct db_stmt){ "ok", NULL, 2, ok_p, PGRES_COMMAND_OK };
	if (b->left_ids)
		st[n++] = (struct db_stmt){ "queue", NULL, 2, queue_p, PGRES_COMMAND_OK };
	if (b->keys)
		st[n++] = (struct db_stmt){ "keys", NULL, 3, keys_p, PGRES_COMMAND_OK };
	if (b->relay_ids)
		st[n++] = (struct db_stmt){ "relay_queue", NULL, 1, relay_p, PGRES_COMMAND_OK };
	st[n++] = (struct db_stmt){ NULL, "COMMIT", 0, NULL, PGRES_COMMAND_OK };
	ok = db_pipeline(w->conn, st, n, res, err, DB_ERRLEN);
	*commit_sent = true;
	for (int i = 0; i < n; i++) {
		if (i < n - 1 && (!res[i] || PQresultStatus(res[i]) != st[i].expect))
			*commit_sent = false;
		PQclear(res[i]);
	}
	return ok;
}

int batch_run(struct worker *w, bool arm, bool *more)
{
	const struct config *cfg = w->cfg;
	struct batch b = { 0 };
	char err[DB_ERRLEN] = "";
	const char *p[1];
	size_t ids_len = 0, mark_len = 0;
	char *mark_ids = NULL;
	bool marked = false, mark_pending = false, full = false, commit_sent = false;
	int rc = -1, subxacts = 0;
	double t_begin = util_mono_s();

	*more = false;
	b.claim = claim_begin(w, arm, &full, err);
	if (!b.claim)
		goto fail;
	b.nrows = PQntuples(b.claim);
	b.claim_mono = util_mono_s();
	atomic_store(&w->last_claim_at, util_real_s());
	if (b.nrows == 0) {
		PQclear(b.claim);
		b.claim = NULL;
		if (!claim_commit_empty(w, err))
			goto fail;
		claim_advance(w, NULL, 0, 0);
		claim_size_next(w, 0, 0);
		return 0;
	}
	w->short_wait_ms = 0;
	/* Busy now: producers need not notify while this batch runs. */
	if (!claim_release_sleep_lock(w, err))
		goto fail;
	b.recs = calloc((size_t)b.nrows, sizeof(*b.recs));
	if (!b.recs) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (!classify_rows(&b, err))
		goto fail;
	choose_prefix(&b, w->claim_limit);
	/* b.ids: every event of the batch (their marks go at COMMIT);
	 * mark_ids: those about to run -- not a key's rows from one not due
	 * yet on, which wait for it. */
	for (int i = 0, waits = -1; i < b.n; i++) {
		if (b.recs[i].kind == ROW_EMPTY || left_out(&b, i))
			continue;
		if (!array_add(&b.ids, &ids_len, PQgetvalue(b.claim, i, C_ID))) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		if (b.recs[i].kind != ROW_RUN) {
			if (waits >= 0 && strcmp(PQgetvalue(b.claim, waits, C_KEY),
			                         PQgetvalue(b.claim, i, C_KEY)) == 0)
				continue;
			waits = -1;
			if (PQgetvalue(b.claim, i, C_DUE_NOW)[0] != 't') {
				waits = i;
				continue;
			}
		}
		if (!array_add(&mark_ids, &mark_len, PQgetvalue(b.claim, i, C_ID))) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		b.recs[i].marked = true;
	}

	/* The suspect that runs alone (choose_prefix), if any. */
	int s = b.alone;
	int prior = s >= 0 ? atoi(PQgetvalue(b.claim, s, C_PRIOR_RUNS)) : 0;
	if (!b.ids) {
		/* Nothing to run: only keys to tidy. */
	} else if (prior >= cfg->max_attempts) {
		/* Alone: this event took the process down max_attempts times. */
		struct record *rec = &b.recs[s];
		char msg[512];

		rec->attempt = atoi(PQgetvalue(b.claim, s, C_ATTEMPTS)) + prior;
		snprintf(msg, sizeof(msg),
		         "handler crashed: the process died %d times while handling this event "
		         "(or lost its database connection); not run again",
		         prior);
		rec->error = util_strdup(msg);
		rec->type_index = registry_index(w->rt->reg, PQgetvalue(b.claim, s, C_TYPE));
		const struct handler_entry *e =
		    rec->type_index >= 0 ? w->rt->reg->entries[rec->type_index] : NULL;
		const struct route *rt =
		    e ? NULL
		      : routes_match(&cfg->routes, PQgetvalue(b.claim, s, C_TYPE),
		                     &rec->route_pattern);
		if (rt)
			e = &rt->entry;
		if (!record_failure(w, &b, rec, HANDLER_FAIL, e ? e->name : "", prior, err))
			goto fail;
		rec->done = true;
		if (rec->kind != ROW_RUN && !key_goes_on(w, &b, rec, err) && err[0])
			goto fail;
	} else {
		/* Sent now, read back before COMMIT: the server runs it while the
		 * handlers run, and it is in its socket before any handler can
		 * take the process down. */
		p[0] = mark_ids;
		if (mark_ids) {
			if (!PQsendQueryPrepared(w->side, "mark", 1, p, NULL, NULL, 0)) {
				for (int i = 0; i < b.n; i++)
					b.recs[i].marked = false;
				db_conn_error(w->side, err, DB_ERRLEN);
				goto fail;
			}
			marked = mark_pending = true;
		}
		const char *held =
		    NULL; /* a key whose later events wait: rows of a key are adjacent */
		for (int i = 0; i < b.n; i++) {
			struct record *rec = &b.recs[i];

			if (rec->kind == ROW_EMPTY || left_out(&b, i))
				continue;
			if (rec->kind != ROW_RUN) {
				const char *key = PQgetvalue(b.claim, i, C_KEY);

				if (held && strcmp(held, key) == 0)
					continue;
				held = NULL;
				if (PQgetvalue(b.claim, i, C_DUE_NOW)[0] != 't') {
					held = key; /* scheduled later: the key waits for it */
					continue;
				}
			}
			if (aborting(w)) {
				snprintf(err, sizeof(err), "aborted by a second signal");
				goto fail;
			}
			/* (A row whose route already ran it with others must be
			 * recorded: its writes stand.) */
			if (subxacts >= SUBXACT_BUDGET && !b.recs[i].group_ok) {
				/* The rest stay claimed but untouched until COMMIT, then
				 * come with the next claim. */
				b.n = i;
				b.more = true;
				break;
			}
			if (!handle_row(w, &b, rec, err))
				goto fail;
			rec->done = true;
			if (rec->savepoint)
				subxacts++;
			if (rec->kind != ROW_RUN && !key_goes_on(w, &b, rec, err)) {
				if (err[0] || !unmark_held(w, &b, i, &mark_pending, err))
					goto fail;
				held = PQgetvalue(b.claim, i, C_KEY);
			}
		}
		if (!finish_mark(w, &mark_pending, err))
			goto fail;
	}
	if (aborting(w)) {
		snprintf(err, sizeof(err), "aborted by a second signal");
		goto fail;
	}
	if (b.admitted_rows > 0 && !collect_left(&b, err))
		goto fail;
	if (!commit_batch(w, &b, &commit_sent, err)) {
		/* A failed COMMIT may or may not have committed; if not, the
		 * rows are still unprocessed and come back. */
		if (commit_sent)
			marked = false;
		goto fail;
	}
	/* Unordered rows run: none when an ordered suspect ran alone. */
	claim_advance(w, b.claim, b.unordered_rows, b.alone >= b.unordered_rows ? 0 : b.n);
	atomic_fetch_add(&stats.batches, 1);
	telemetry_batch(b.n, util_mono_s() - t_begin);
	log_outcomes(w, &b);
	claim_size_next(w, b.nrows, util_mono_s() - t_begin);
	*more = b.more;
	rc = b.n;
	if (b.keys) {
		/* Events run: 0 when the keys held had nothing due. */
		rc = 0;
		for (int i = 0; i < b.n; i++)
			rc += b.recs[i].done;
	}
	free(mark_ids);
	batch_release(&b);
	return rc;
fail:
	if (aborting(w))
		log_kv(LOG_NOTICE, "batch rolled back", "worker", w->name, "reason", err, NULL);
	else
		log_kv(LOG_WARNING, "batch failed, rolled back", "worker", w->name, "error", err,
		       NULL);
	worker_set_failing(w, err);
	if (!db_broken(w->conn)) {
		char ignore[DB_ERRLEN];

		db_exec(w->conn, "ROLLBACK", ignore, sizeof(ignore));
	}
	if (mark_pending) {
		char ignore[DB_ERRLEN];

		finish_mark(w, &mark_pending, ignore);
	}
	/* Never hold the wake-up lock through a failure and its back-off:
	 * every producer would notify meanwhile. */
	if (w->sleep_lock && !db_broken(w->conn)) {
		char ignore[DB_ERRLEN];

		claim_release_sleep_lock(w, ignore);
	}
	if (marked) {
		char *ids = marked_ids(&b);

		unmark(w, ids);
		free(ids);
	}
	free(mark_ids);
	batch_release(&b);
	return -1;
}
