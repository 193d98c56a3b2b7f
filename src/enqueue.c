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
 */
const char enqueue_deliveries_sql[] =
    "INSERT INTO deliveries (event_id, subscription_id, event_type, body)"
    " SELECT e.id, s.id, e.event_type,"
    "  json_build_object('id', e.id, 'type', e.event_type,"
    "   'timestamp', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    "   'aggregate', CASE WHEN e.aggregate_id IS NULL AND e.aggregate_type IS NULL THEN NULL"
    "    ELSE json_build_object('id', e.aggregate_id, 'type', e.aggregate_type) END,"
    "   'data', e.payload)::text"
    " FROM events e JOIN subscriptions s ON s.enabled"
    "  AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.event_types) p"
    "              WHERE pgeventd_pattern_match(p, e.event_type))"
    " WHERE e.id = ANY($1::uuid[])"
    " ON CONFLICT (event_id, subscription_id) DO UPDATE"
    "  SET status = 'pending', attempt = 0, next_attempt_at = now(), locked_until = NULL,"
    "      last_error = NULL, finished_at = NULL"
    "  WHERE deliveries.status <> 'in_flight'";
