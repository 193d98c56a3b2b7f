/*
 * claim.c -- a worker's claim: which events it takes, how many, and the
 * wake-up lock it holds while it sleeps.
 *
 * The claim reads events_due_idx (due time = next_attempt_at, else
 * created_at) over the range [from, now()]: events in backoff or scheduled
 * later are never visited. `from` is where this worker's last claim ended,
 * less a second for producers whose rows commit after later ones; a full
 * claim from the start of the index runs at most every 20 times its own
 * cost (each dead index entry left by processed events costs a heap visit
 * until vacuum removes it, and a held snapshot keeps vacuum from it), so a
 * row that commits later still is found within that period, and always
 * before the worker sleeps or run --once stops.
 *
 * The claim size starts at 100 (or batch_size, if smaller) and doubles
 * while claims come back full and quick, up to batch_size: an idle queue
 * hands each event over at once, a deep backlog drains in large batches.
 *
 * Wake-ups (listen = true): see migrations/0004_claim_by_due.sql. A claim
 * that may be the last look before a sleep ("armed") first tries the
 * advisory lock SLEEP_LOCK; holding it, and having claimed after taking
 * it, the worker may sleep until a NOTIFY, for producers then notify.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "claim.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "ordering.h"
#include "util.h"

/* A claim starts at this size (or batch_size, if smaller). */
#define CLAIM_START 100
/* A batch that took longer than this does not grow the next claim. */
#define GROW_MAX_S 0.25

/* The wake-up lock of migration 0004 (also in its triggers). */
#define SLEEP_LOCK "1885824374, 2"

#define DUE "coalesce(e.next_attempt_at, e.created_at)"

/* The columns of a claimed event `e` (see the C_ enum in claim.h), less
 * the last three, which differ between the two claims. lag is measured
 * from the moment the event fell due. The crash marks are read by a
 * subquery per claimed row, an index probe of pgeventd_inflight's key: as a
 * join the planner may read that table whole, and while a held snapshot
 * keeps vacuum from it, it is mostly dead rows, one per event processed
 * since (measured: claims of 1 to 15 s). */
#define EVENT_COLUMNS                                                                              \
	"e.id, e.event_type, e.aggregate_id, e.aggregate_type, e.payload::text,"                   \
	" e.metadata::text, e.attempts, e.created_at, e.created_by,"                               \
	" coalesce((SELECT m.runs FROM pgeventd_inflight m WHERE m.event_id = e.id), 0) AS runs,"  \
	" greatest(extract(epoch from clock_timestamp() - " DUE "), 0)::float8 AS lag,"            \
	" " DUE "::text AS due_text, e.ordering_key"

/* The unordered claim: events not queued under a key (events_due_idx),
 * due in [$2 - 1 s, now()], `extra` further conditions. */
#define DUE_EVENTS(extra)                                                                          \
	" FROM events e"                                                                           \
	" WHERE NOT e.processed AND e.pgeventd_key IS NULL"                                        \
	" AND " DUE " >= $2::timestamptz - interval '1 second' AND " DUE " <= now()" extra         \
	" ORDER BY " DUE ", e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED"

/*
 * The key of an ordered event, NULL for any other: "k:" || ordering_key
 * for a type matching a LIKE pattern of $KP (ordering.by_ordering_key),
 * else "a:" || aggregate_type || ":" || aggregate_id for one matching $AP
 * (ordering.by_aggregate). Types keyed the same way share keys: the
 * order.created and order.cancelled of one order are one key. An ordered
 * type's event whose key column is NULL is not ordered.
 */
#define KEY_OF(AP, KP)                                                                             \
	"CASE WHEN e.event_type LIKE ANY(" KP "::text[]) THEN 'k:' || e.ordering_key"              \
	" WHEN e.event_type LIKE ANY(" AP "::text[]) THEN 'a:' || coalesce(e.aggregate_type, '')"  \
	" || ':' || e.aggregate_id END"

/*
 * Admission, in the batch's transaction ahead of its claim: take ordered
 * events out of events_due_idx. Keys are split into ADMIT_PARTITIONS by a
 * hash; a batch admits for up to some partitions (their transaction locks
 * ADMIT_LOCK, p, taken by admit_lock_sql and noted in pgeventd.parts: in a
 * statement of their own, so that the scan's snapshot is taken after them
 * and sees what their previous holder committed) and reads their first $1
 * due ordered events ($2, $3 the LIKE patterns of
 * KEY_OF) from the start of events_due_idx, with no SKIP LOCKED: so each
 * pass sees every waiting event of its keys before their later ones, and a
 * key's events join it in (due, id) order -- two batches admitting
 * different stretches of one key at once could not keep that. The last
 * look before sleeping, or stopping with --once (the full claim after one
 * that found nothing), takes every free partition: those it cannot take
 * are in the hands of batches that will look again. Other claims take at
 * most ADMIT_TAKE, so that the other workers have partitions too.
 *
 * What happens to an event depends on its key's row in pgeventd_keys:
 *   - none (nothing of the key is queued: the common case): the event is
 *     this batch's to run, in its key's order -- no other batch can reach
 *     it, the partition lock keeps other admitters off it -- and nothing is
 *     written for it unless it is left over (queue_sql at COMMIT). Noted
 *     in the transaction's settings pgeventd.admit_ids/_keys for the claim;
 *   - one this transaction locks (SKIP LOCKED): it joins the key's queue
 *     behind the events already there (pgeventd_key set);
 *   - one locked elsewhere (a batch is running the key): left for a later
 *     pass, with every other event of that key.
 * A key's due time is not moved here: an event older than its key's head
 * (committed late) runs first once the key is next due. Having queued
 * any, it wakes a sleeping worker as producers do.
 */
#define ADMIT_LOCK       "1885824375"
#define ADMIT_PARTITIONS "8"
/* Partitions an ordinary claim admits for at most. */
#define ADMIT_TAKE    "4"
#define KEY_PART(key) "(hashtext(" key ") & (" ADMIT_PARTITIONS " - 1))"
/* $1 the partition to try first, $2 how many to take, $3 true for a pass
 * from the start of the index. Notes the partitions taken in
 * pgeventd.parts, and in pgeventd.admit_full whether the pass starts from
 * the start of the index. Returns the transaction's now() too
 * (claim_advance). Where a pass that is not full starts -- the earliest of
 * the partitions' cursors (pgeventd_admit_cursor), less a second for
 * producers whose rows commit after later ones -- is read by admit_sql, in
 * a snapshot taken after the locks: read here, a cursor could predate
 * them, and miss an event the partition's previous holder left (its key
 * busy) behind the cursor it then wrote; the pass would start after that
 * event and move the cursor past it, and a later event of its key could be
 * admitted before it. */
/* clang-format off */
static const char admit_lock_sql[] =
    "WITH l AS MATERIALIZED (SELECT coalesce((SELECT array_agg(y.p) FROM (SELECT x.p"
    "  FROM (SELECT ($1::int + i) % " ADMIT_PARTITIONS " AS p"
    "  FROM generate_series(0, " ADMIT_PARTITIONS " - 1) i) x"
    "  WHERE pg_try_advisory_xact_lock(" ADMIT_LOCK ", x.p) LIMIT $2) y), '{}') AS parts)"
    " SELECT set_config('pgeventd.parts', l.parts::text, true),"
    " set_config('pgeventd.admit_full', $3::boolean::text, true), now()::text FROM l";

static const char admit_sql[] =
    "WITH"
    " a AS (SELECT e.id, " KEY_OF("$2", "$3") " AS key, " DUE " AS due FROM events e"
    "  WHERE current_setting('pgeventd.parts') <> '{}'"
    "  AND NOT e.processed AND e.pgeventd_key IS NULL AND " DUE " <= now()"
    "  AND " DUE " >= (SELECT CASE WHEN current_setting('pgeventd.admit_full')::boolean"
    "  THEN '-infinity' ELSE coalesce((SELECT min(c.due) - interval '1 second'"
    "  FROM pgeventd_admit_cursor c"
    "  WHERE c.part = ANY(current_setting('pgeventd.parts')::int[])), '-infinity') END)"
    "  AND (e.event_type LIKE ANY($2::text[]) OR e.event_type LIKE ANY($3::text[]))"
    /* (a subquery: the setting is read once, not once per row) */
    "  AND " KEY_PART(KEY_OF("$2", "$3"))
    "  = ANY((SELECT current_setting('pgeventd.parts')::int[])::int[])"
    "  ORDER BY " DUE ", e.id LIMIT $1),"
    " known AS (SELECT k.key FROM pgeventd_keys k WHERE k.key IN (SELECT key FROM a)),"
    /* Of the keys with a row only (the scan's keys mostly have none), and
     * nothing to update unless one is locked here: a one-time filter, for
     * the planner would otherwise visit every event read to join it. */
    " mine AS (SELECT k.key FROM pgeventd_keys k WHERE k.key IN (SELECT key FROM known)"
    "  ORDER BY k.key FOR UPDATE SKIP LOCKED),"
    " queued AS (UPDATE events e SET pgeventd_key = a.key FROM a WHERE EXISTS (SELECT FROM mine)"
    "  AND e.id = a.id AND a.key IN (SELECT key FROM mine) RETURNING e.id),"
    " free AS (SELECT id, key FROM a WHERE key NOT IN (SELECT key FROM known)),"
    /* The partitions' new cursors: the first event left (its key busy), or
     * the last one read; unchanged when none was read. */
    " moved AS (UPDATE pgeventd_admit_cursor c SET due = x.due FROM (SELECT " KEY_PART("a.key")
    "  AS part, coalesce(min(a.due) FILTER (WHERE a.key IN (SELECT key FROM known)"
    "  AND a.key NOT IN (SELECT key FROM mine)), max(a.due)) AS due FROM a GROUP BY 1) x"
    "  WHERE c.part = x.part)"
    " SELECT set_config('pgeventd.admit_ids', coalesce((SELECT array_agg(id)::text FROM free),"
    "  '{}'), true),"
    " set_config('pgeventd.admit_keys', coalesce((SELECT array_agg(key)::text FROM free),"
    "  '{}'), true),"
    " n, n > 0 AND NOT pg_try_advisory_xact_lock_shared(" SLEEP_LOCK ")"
    " AND pg_notify('pgeventd_events', '') IS NULL FROM (SELECT count(*) AS n FROM queued) d";
/* clang-format on */

/*
 * With ordered event types, after admission, two statements. First, lock
 * up to $1 due keys (pgeventd_keys_due_idx over (..., now()]: keys whose
 * head is in backoff or parked are never visited), each for the whole
 * batch -- which is what keeps two events of a key from running at once
 * anywhere -- and note them in the transaction's setting pgeventd.keys.
 * Then, with a new snapshot: the unordered claim less the ordered events
 * not yet admitted ($4, $5 the patterns of KEY_OF); the first $3 events of
 * each locked key in (created_at, id) order; and the events admission left
 * to this batch. The second snapshot matters: a key locked just as its
 * previous owner committed is its new version, but a snapshot from before
 * that commit would still see the events that owner ran as unprocessed. A
 * locked key whose queue is empty comes as one row with a NULL id, for the
 * batch to delete. Rows come unordered ones first (by due time), then by
 * key in (created_at, id) order; the last column says which were admitted.
 */
static const char lock_keys_sql[] =
    "SELECT set_config('pgeventd.keys', coalesce((SELECT array_agg(k.key)::text FROM"
    " (SELECT k.key FROM pgeventd_keys k WHERE k.due_at <= now() ORDER BY k.due_at"
    " LIMIT $1 FOR UPDATE SKIP LOCKED) k), '{}'), true)";

/* clang-format off */
static const char claim_ordered_sql[] =
    "WITH u AS (SELECT " EVENT_COLUMNS ", NULL::text AS key, true AS due_now,"
    " " DUE " AS sort_at" DUE_EVENTS(" AND (" KEY_OF("$4", "$5") ") IS NULL") ")"
    " SELECT * FROM (SELECT u.*, false AS admitted, 0 AS branch FROM u"
    " UNION ALL SELECT q.*, k.key, coalesce(q.due_text::timestamptz <= now(), false),"
    " q.created_at, false, 1 FROM unnest(current_setting('pgeventd.keys')::text[]) AS k (key)"
    " LEFT JOIN LATERAL (SELECT " EVENT_COLUMNS " FROM events e"
    " WHERE e.pgeventd_key = k.key AND NOT e.processed ORDER BY e.created_at, e.id LIMIT $3) q"
    " ON true"
    " UNION ALL SELECT " EVENT_COLUMNS ", f.key, true, e.created_at, true, 1"
    " FROM unnest(current_setting('pgeventd.admit_ids')::uuid[],"
    " current_setting('pgeventd.admit_keys')::text[]) AS f (id, key)"
    " JOIN events e ON e.id = f.id) c"
    " ORDER BY c.branch, c.key, c.sort_at, c.id";
/* clang-format on */

/* Without ordered event types: the unordered claim ($1 limit, $2 the
 * claim's lower bound on the due time, '-infinity' for a full claim), and
 * the first $3 events of each key lock_keys locked -- the events of the
 * keys queued while ordered types were configured (or under patterns
 * since changed): they still run, in their keys' order,
 * rather than wait for good. With no key row due, lock_keys is one probe of
 * an empty range of pgeventd_keys_due_idx. */
/* clang-format off */
static const char claim_keys_sql[] =
    "WITH u AS (SELECT " EVENT_COLUMNS ", NULL::text AS key, true AS due_now,"
    " " DUE " AS sort_at" DUE_EVENTS("") ")"
    " SELECT * FROM (SELECT u.*, false AS admitted, 0 AS branch FROM u"
    " UNION ALL SELECT q.*, k.key, coalesce(q.due_text::timestamptz <= now(), false),"
    " q.created_at, false, 1 FROM unnest(current_setting('pgeventd.keys')::text[]) AS k (key)"
    " LEFT JOIN LATERAL (SELECT " EVENT_COLUMNS " FROM events e"
    " WHERE e.pgeventd_key = k.key AND NOT e.processed ORDER BY e.created_at, e.id LIMIT $3) q"
    " ON true) c"
    " ORDER BY c.branch, c.key, c.sort_at, c.id";
/* clang-format on */

/* Milliseconds until the next event falls due (a retry in backoff or a
 * scheduled event; the index's first entry after now()), or a key whose
 * head waits (pgeventd_keys_due_idx); NULL when none. */
static const char next_due_ordered_sql[] =
    "SELECT ceil(extract(epoch from least((SELECT min(" DUE ") FROM events e"
    " WHERE NOT e.processed AND e.pgeventd_key IS NULL AND " DUE " > now()),"
    " (SELECT min(k.due_at) FROM pgeventd_keys k WHERE k.due_at > now()))"
    " - clock_timestamp()) * 1000)::bigint";

bool claim_prepare(PGconn *conn, const struct config *cfg, char *err, size_t errlen)
{
	if (ordering_enabled(&cfg->ordering))
		return db_prepare(conn, "admit_lock", admit_lock_sql, 3, err, errlen) &&
		       db_prepare(conn, "admit", admit_sql, 3, err, errlen) &&
		       db_prepare(conn, "lock_keys", lock_keys_sql, 1, err, errlen) &&
		       db_prepare(conn, "claim", claim_ordered_sql, 5, err, errlen) &&
		       db_prepare(conn, "next_due", next_due_ordered_sql, 0, err, errlen);
	return db_prepare(conn, "lock_keys", lock_keys_sql, 1, err, errlen) &&
	       db_prepare(conn, "claim", claim_keys_sql, 3, err, errlen) &&
	       db_prepare(conn, "next_due", next_due_ordered_sql, 0, err, errlen);
}

int claim_handler_timeout(const struct config *cfg)
{
	int half = cfg->stall_timeout_ms / 2;

	return cfg->handler_timeout_ms < half ? cfg->handler_timeout_ms : half;
}

int claim_start(const struct config *cfg)
{
	return cfg->batch_size < CLAIM_START ? cfg->batch_size : CLAIM_START;
}

void claim_size_next(struct worker *w, int claimed, double took_s)
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

bool claim_release_sleep_lock(struct worker *w, char *err)
{
	if (!w->sleep_lock)
		return true;
	w->sleep_lock = false;
	return db_exec(w->conn, "SELECT pg_advisory_unlock_all()", err, DB_ERRLEN);
}

PGresult *claim_begin(struct worker *w, bool arm, bool *full, char *err)
{
	const struct config *cfg = w->cfg;
	struct db_stmt st[10];
	PGresult *res[10];
	char limit[16], timeout[16], key_run[16], partition[16];
	const char *claim_p[5], *admit_p[3], *lock_p[3], *timeout_p[1] = { timeout };
	bool ordered = ordering_enabled(&cfg->ordering);
	char *by_aggregate = NULL, *by_key = NULL;
	int n = 0, arm_at = -1, released_at = -1, lock_at = -1, claim_at;
	bool ok;

	snprintf(limit, sizeof(limit), "%d", w->claim_limit);
	claim_p[0] = limit;
	claim_p[1] = claim_from(w, full);
	snprintf(key_run, sizeof(key_run), "%d", CLAIM_KEY_RUN);
	claim_p[2] = key_run;
	if (ordered) {
		by_aggregate = ordering_like_array(&cfg->ordering.by_aggregate);
		by_key = ordering_like_array(&cfg->ordering.by_ordering_key);
		if (!by_aggregate || !by_key) {
			free(by_aggregate);
			free(by_key);
			snprintf(err, DB_ERRLEN, "out of memory");
			return NULL;
		}
		claim_p[3] = admit_p[1] = by_aggregate;
		claim_p[4] = admit_p[2] = by_key;
		admit_p[0] = limit;
		/* Each batch starts at the next partition: none waits on one
		 * worker's turn. */
		snprintf(partition, sizeof(partition), "%u", w->admit_turn++ % 1024u);
		lock_p[0] = partition;
		/* Every free partition on the last look only: a worker's first
		 * claim, or a scheduled full one, taking them all would leave the
		 * other workers nothing to admit for its whole batch (and with
		 * --once they would stop). */
		lock_p[1] = *full && w->last_look ? ADMIT_PARTITIONS : ADMIT_TAKE;
		lock_p[2] = *full ? "true" : "false";
	}
	if (w->sleep_lock && !arm) {
		released_at = n;
		st[n++] = (struct db_stmt){ NULL, "SELECT pg_advisory_unlock_all()", 0, NULL,
			                    PGRES_TUPLES_OK };
	}
	if (w->timeout_applied_ms != claim_handler_timeout(cfg)) {
		snprintf(timeout, sizeof(timeout), "%d", claim_handler_timeout(cfg));
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
	if (ordered) {
		lock_at = n;
		st[n++] = (struct db_stmt){ "admit_lock", NULL, 3, lock_p, PGRES_TUPLES_OK };
		st[n++] = (struct db_stmt){ "admit", NULL, 3, admit_p, PGRES_TUPLES_OK };
		st[n++] = (struct db_stmt){ "lock_keys", NULL, 1, admit_p, PGRES_TUPLES_OK };
	} else {
		st[n++] = (struct db_stmt){ "lock_keys", NULL, 1, claim_p, PGRES_TUPLES_OK };
	}
	claim_at = n;
	st[n++] = (struct db_stmt){ "claim", NULL, ordered ? 5 : 3, claim_p, PGRES_TUPLES_OK };
	if (w->sleep_lock && arm) {
		/* Woken while holding the lock: this claim looked after the
		 * wake-up, so let go of the lock in the same round trip rather
		 * than one more before the first handler runs; should it have
		 * found nothing, the worker's next claim takes the lock again
		 * first (w->rearm). */
		released_at = n;
		st[n++] = (struct db_stmt){ NULL, "SELECT pg_advisory_unlock_all()", 0, NULL,
			                    PGRES_TUPLES_OK };
	}

	double t0 = util_mono_s();
	ok = db_pipeline(w->conn, st, n, res, err, DB_ERRLEN);
	free(by_aggregate);
	free(by_key);
	w->last_claim_full = *full && (!ordered || w->last_look);
	w->last_look = false;
	/* Let go only if the unlock ran: a pipeline that failed before it
	 * leaves the lock held, for the failure path to release. */
	if (released_at >= 0 && res[released_at] &&
	    PQresultStatus(res[released_at]) == PGRES_TUPLES_OK) {
		w->sleep_lock = false;
		if (released_at > claim_at)
			w->rearm = true;
	}
	if (ok)
		w->timeout_applied_ms = claim_handler_timeout(cfg);
	if (arm_at >= 0 && res[arm_at] && PQresultStatus(res[arm_at]) == PGRES_TUPLES_OK) {
		const char *v = PQgetvalue(res[arm_at], 0, 0);

		w->sleep_state = v[0] == 'm' ? SLEEP_MINE : v[0] == 'o' ? SLEEP_OTHER : SLEEP_BUSY;
		if (w->sleep_state == SLEEP_MINE)
			w->sleep_lock = true;
	}
	if (ok && *full)
		schedule_full_claim(w, util_mono_s() - t0);
	w->claim_now[0] = '\0';
	if (ok && lock_at >= 0 && PQntuples(res[lock_at]) == 1)
		snprintf(w->claim_now, sizeof(w->claim_now), "%s", PQgetvalue(res[lock_at], 0, 2));
	for (int i = 0; i < n; i++)
		if (i != claim_at)
			PQclear(res[i]);
	if (!ok) {
		PQclear(res[claim_at]);
		return NULL;
	}
	return res[claim_at];
}

bool claim_commit_empty(struct worker *w, char *err)
{
	struct db_stmt st[2] = {
		{ NULL, "COMMIT", 0, NULL, PGRES_COMMAND_OK },
		{ "next_due", NULL, 0, NULL, PGRES_TUPLES_OK },
	};
	PGresult *res[2];
	bool ok = db_pipeline(w->conn, st, 2, res, err, DB_ERRLEN);

	if (ok && !PQgetisnull(res[1], 0, 0)) {
		int64_t due = util_mono_ms() + atoll(PQgetvalue(res[1], 0, 0)) + 5;

		if (w->next_due_ms == 0 || due < w->next_due_ms)
			w->next_due_ms = due;
	}
	PQclear(res[0]);
	PQclear(res[1]);
	return ok;
}

void claim_advance(struct worker *w, const PGresult *claim, int unordered, int ran)
{
	if (ran >= unordered && unordered < w->claim_limit && w->claim_now[0] != '\0')
		snprintf(w->cursor, sizeof(w->cursor), "%s", w->claim_now);
	else if (claim && ran > 0 && unordered > 0)
		snprintf(w->cursor, sizeof(w->cursor), "%s",
		         PQgetvalue(claim, (ran < unordered ? ran : unordered) - 1, C_DUE));
}
