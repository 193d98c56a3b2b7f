/* enqueue.c -- queues the deliveries of a batch's relayed events (see enqueue.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "enqueue.h"

#include "webhook.h"

bool enqueue_wants(const struct relay_config *rc, const char *event_type)
{
	for (int i = 0; i < rc->event_types.n; i++)
		if (webhook_pattern_match(rc->event_types.items[i], event_type))
			return true;
	return false;
}

/*
 * The body is built here, once, from the event row: it is what every
 * attempt of every delivery of this event sends, byte for byte. A replayed
 * event re-queues its deliveries that are not in flight (receivers dedupe
 * by the delivery id, which stays the same). One statement queues the
 * deliveries of every relayed event of a batch: no savepoint, no round
 * trip per event.
 *
 * Ordered subscriptions (migration 0009): a delivery carries its event's
 * key, and joins the end of that key's queue, in the events' (created_at,
 * id) order within the batch (the rows reach the INSERT sorted, and its
 * trigger numbers them as they come). The keys' locks are taken first, in
 * lock order (lk), so that two batches, or a batch and the relay's
 * results, cannot deadlock on them; the trigger's own lock of each row's
 * key then finds it held. A replayed delivery that still waits behind its
 * key's head keeps waiting; one that had finished joins the end again.
 */
const char enqueue_deliveries_sql[] =
    "WITH q AS MATERIALIZED ("
    " SELECT e.id, s.id AS sub, e.event_type, e.created_at,"
    "  json_build_object('id', e.id, 'type', e.event_type,"
    "   'timestamp', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    "   'aggregate', CASE WHEN e.aggregate_id IS NULL AND e.aggregate_type IS NULL THEN NULL"
    "    ELSE json_build_object('id', e.aggregate_id, 'type', e.aggregate_type) END,"
    "   'data', e.payload)::text AS body,"
    "  CASE WHEN s.ordered THEN coalesce('k:' || e.ordering_key,"
    "   'a:' || coalesce(e.aggregate_type, '') || ':' || e.aggregate_id) END AS order_key"
    " FROM events e JOIN subscriptions s ON s.enabled"
    "  AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.event_types) p"
    "              WHERE pgeventd_pattern_match(p, e.event_type))"
    " WHERE e.id = ANY($1::uuid[])),"
    " lk AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(k) FROM"
    "  (SELECT DISTINCT pgeventd_order_lock_key(sub, order_key) AS k FROM q"
    "    WHERE order_key IS NOT NULL ORDER BY 1) l) t)"
    " INSERT INTO deliveries (event_id, subscription_id, event_type, body, order_key)"
    " SELECT q.id, q.sub, q.event_type, q.body, q.order_key FROM q, lk"
    " ORDER BY q.created_at, q.id"
    " ON CONFLICT (event_id, subscription_id) DO UPDATE"
    "  SET status = 'pending', attempt = 0, locked_until = NULL, last_error = NULL,"
    "      finished_at = NULL,"
    "      next_attempt_at = CASE WHEN deliveries.status = 'pending'"
    "       AND deliveries.next_attempt_at = 'infinity' THEN 'infinity'::timestamptz ELSE now() "
    "END,"
    "      order_key = CASE WHEN deliveries.status = 'pending' THEN deliveries.order_key"
    "       ELSE excluded.order_key END"
    "  WHERE deliveries.status <> 'in_flight'";
