/* figures.c -- the SQL of the sampler's and `pgeventd status`'s figures (figures.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "figures.h"

#include <stddef.h>

#define STR_(x) #x
#define STR(x)  STR_(x)
#define UP_TO   STR(FIGURES_EXACT_UP_TO)

/*
 * Capped counts, for figures over history that only grows. CAPPED_N is a
 * FROM item "c" with one column n: at most FIGURES_EXACT_UP_TO + 1 rows of
 * `from_where`, read in the order `order_by` of an index (so the planner
 * walks that index and stops), counted. CAPPED_VALUE is n while it is within
 * the limit, else the larger of n and reltuples of `estimate_of`, a table or
 * a partial index (-1, or no such relation, when never analysed: then n,
 * one past the limit).
 */
#define CAPPED_N(from_where, order_by)                                                             \
	"(SELECT count(*) AS n FROM (SELECT 1 FROM " from_where " ORDER BY " order_by              \
	" LIMIT " UP_TO " + 1) s) c"
#define CAPPED_VALUE(estimate_of)                                                                  \
	"CASE WHEN c.n <= " UP_TO " THEN c.n ELSE greatest(c.n,"                                   \
	" (SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass('" estimate_of "')))"    \
	" END"

/* min() reads the claim index (events_due_idx, migration 0004) from its
 * start: cheap whatever the backlog. An event in backoff or scheduled for
 * later is not late. */
const char figures_events_oldest_due_sql[] =
    "SELECT coalesce(extract(epoch from now() - least((SELECT min(coalesce(next_attempt_at,"
    " created_at)) FROM events WHERE NOT processed AND pgeventd_key IS NULL"
    " AND coalesce(next_attempt_at, created_at) <= now()),"
    " (SELECT min(due_at) FROM pgeventd_keys WHERE due_at <= now()))), 0)::float8";

/* The unprocessed rows are in two partial indexes (migration 0007):
 * events_due_idx, those not queued under a key, and events_key_idx, those
 * of ordered types queued under their key. This costs the backlog. */
#define UNPROCESSED(cols)                                                                          \
	"(SELECT " cols " FROM events WHERE NOT processed AND pgeventd_key IS NULL"                \
	" UNION ALL SELECT " cols " FROM events WHERE NOT processed AND pgeventd_key IS NOT NULL)"

const char figures_events_pending_sql[] = "SELECT count(*) FROM " UNPROCESSED("1") " u";

/* Through event_dead_letters_type_created_idx (migration 0001). */
const char figures_dead_letters_sql[] = "SELECT " CAPPED_VALUE(
    "event_dead_letters") " FROM " CAPPED_N("event_dead_letters", "event_type, created_at");

const char figures_dead_letters_estimate_sql[] =
    "SELECT greatest(reltuples, 0)::bigint FROM pg_class"
    " WHERE oid = 'event_dead_letters'::regclass";

/* Pending through any partial index on status = 'pending' (the claim's);
 * dead through deliveries_dead_idx (migration 0006). */
const char figures_deliveries_sql[] =
    "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending'), " CAPPED_VALUE(
        "deliveries_dead_idx") " FROM " CAPPED_N("deliveries WHERE status = 'dead'",
                                                 "finished_at, id");

/* Subscriptions are few: read whole. The last error of a failing one (and
 * only of those) is that of its retry due last, through the claim's index
 * of its pending deliveries (deliveries_sub_due_idx, migration 0005): a
 * retry is due later than the fresh deliveries beside it. When none is
 * pending (its failures all ended dead), that of its newest 20 deliveries
 * (deliveries_subscription_idx) that has one. */
const char figures_subscriptions_sql[] =
    "SELECT name, enabled, coalesce(disabled_reason, ''), coalesce(disabled_at::text, ''),"
    " consecutive_failures, coalesce(failing_since::text, ''),"
    " coalesce(paused_until::text, ''),"
    " CASE WHEN enabled AND consecutive_failures > 0 THEN coalesce("
    "  (SELECT d.last_error FROM deliveries d WHERE d.subscription_id = s.id"
    "    AND d.status = 'pending' AND d.last_error IS NOT NULL"
    "    ORDER BY d.next_attempt_at DESC LIMIT 1),"
    "  (SELECT n.last_error FROM (SELECT d.last_error, d.created_at FROM deliveries d"
    "    WHERE d.subscription_id = s.id ORDER BY d.created_at DESC LIMIT 20) n"
    "    WHERE n.last_error IS NOT NULL ORDER BY n.created_at DESC LIMIT 1), '')"
    " ELSE '' END"
    " FROM subscriptions s ORDER BY name";

/* The queue, through events_due_idx: it holds only unprocessed rows, so
 * this costs the backlog, not the table. "Due" is the claim's own
 * condition (src/claim.c): next_attempt_at, else created_at, is past. */
const char figures_status_queue_sql[] =
    "SELECT count(*) AS pending,"
    " count(*) FILTER (WHERE coalesce(next_attempt_at, created_at) <= now()) AS due_now,"
    " count(*) FILTER (WHERE coalesce(next_attempt_at, created_at) > now()) AS scheduled_later,"
    " count(*) FILTER (WHERE attempts > 0) AS retrying,"
    " min(created_at) AS oldest_pending_created_at,"
    " floor(extract(epoch FROM now() - min(created_at)))::bigint AS oldest_pending_age_s"
    " FROM " UNPROCESSED("next_attempt_at, created_at, attempts") " u";

/* Keys of ordered event types with events queued (pgeventd_keys holds a
 * row only for those: it is the backlog's size): how many wait for a head
 * in backoff, how many are parked (the first ten named). */
const char figures_status_keys_sql[] =
    "SELECT count(*) AS queued, count(*) FILTER (WHERE due_at > now()) AS waiting,"
    " count(*) FILTER (WHERE parked_event IS NOT NULL) AS parked,"
    " coalesce((SELECT json_agg(p) FROM (SELECT key, parked_event AS head, parked_at"
    " FROM pgeventd_keys WHERE parked_event IS NOT NULL ORDER BY parked_at, key LIMIT 10) p),"
    " '[]')::text AS parked_keys FROM pgeventd_keys";

/* Through events_processed_at_idx (migration 0003). */
const char figures_status_processed_sql[] =
    "SELECT count(*) FROM events WHERE processed AND processed_at >= now() - interval '1 hour'";

/*
 * By event type, through event_dead_letters_type_created_idx: the types
 * one index probe each (a loose index scan: each step the first type after
 * the last), then per type its count (the type's entries) and its latest
 * (the last entry). A GROUP BY over the table would read every row.
 */
const char figures_status_dead_letters_sql[] =
    "WITH RECURSIVE t(event_type) AS ("
    " (SELECT event_type FROM event_dead_letters ORDER BY event_type LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT d.event_type FROM event_dead_letters d WHERE d.event_type > t.event_type"
    " ORDER BY d.event_type LIMIT 1) FROM t WHERE t.event_type IS NOT NULL)"
    " SELECT t.event_type,"
    " (SELECT count(*) FROM event_dead_letters d WHERE d.event_type = t.event_type) AS count,"
    " (SELECT max(d.created_at) FROM event_dead_letters d WHERE d.event_type = t.event_type)"
    " AS latest"
    " FROM t WHERE t.event_type IS NOT NULL ORDER BY 2 DESC, 1";

/* Each status through its partial index: pending and in_flight the
 * claim's and the lease's (migration 0002), delivered, failed and dead
 * their own (migration 0006). Delivered deliveries are the history: their
 * total is counted up to the limit, then estimated. */
const char figures_status_deliveries_sql[] =
    "SELECT (SELECT count(*) FROM deliveries WHERE status = 'pending') AS pending,"
    " (SELECT count(*) FROM deliveries WHERE status = 'in_flight') AS in_flight,"
    " " CAPPED_VALUE(
        "deliveries_delivered_idx") " AS delivered,"
                                    " c.n > " UP_TO " AS delivered_estimated,"
                                    " (SELECT count(*) FROM deliveries WHERE status = 'delivered'"
                                    " AND finished_at >= now() - interval '1 hour') AS "
                                    "delivered_last_hour,"
                                    " (SELECT count(*) FROM deliveries WHERE status = 'failed') AS "
                                    "failed,"
                                    " (SELECT count(*) FROM deliveries WHERE status = 'dead') AS "
                                    "dead"
                                    " FROM " CAPPED_N("deliveries WHERE status = 'delivered'",
                                                      "finished_at, id");

const struct figure_query figures_queries[] = {
	{ "sampler.events_oldest_due", figures_events_oldest_due_sql },
	{ "sampler.events_pending", figures_events_pending_sql },
	{ "sampler.dead_letters", figures_dead_letters_sql },
	{ "sampler.dead_letters_estimate", figures_dead_letters_estimate_sql },
	{ "sampler.deliveries", figures_deliveries_sql },
	{ "sampler.subscriptions", figures_subscriptions_sql },
	{ "status.queue", figures_status_queue_sql },
	{ "status.processed", figures_status_processed_sql },
	{ "status.dead_letters", figures_status_dead_letters_sql },
	{ "status.keys", figures_status_keys_sql },
	{ "status.deliveries", figures_status_deliveries_sql },
	{ NULL, NULL },
};
