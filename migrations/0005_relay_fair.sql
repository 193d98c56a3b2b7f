-- 0005_relay_fair.sql: the relay's claim per subscription (a cap on
-- deliveries in flight, an optional rate limit, fair shares of the slots),
-- results written a round at a time, and operational events.
--
-- Changes no delivery; existing subscriptions get the default cap and no
-- rate limit.

-- At most this many deliveries of the subscription in flight at once,
-- across every instance: a receiver that stops answering holds only these.
ALTER TABLE subscriptions
    ADD COLUMN IF NOT EXISTS max_in_flight integer NOT NULL DEFAULT 16
        CHECK (max_in_flight BETWEEN 1 AND 10000),
    -- Requests per second, NULL: no limit. A token bucket holding at most
    -- one second's worth, kept in the row and taken from in the claim.
    ADD COLUMN IF NOT EXISTS rate_limit integer
        CHECK (rate_limit IS NULL OR rate_limit BETWEEN 1 AND 100000),
    ADD COLUMN IF NOT EXISTS rate_tokens double precision NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_at timestamptz;

-- The claim reads, per enabled and unpaused subscription, the head of its
-- due deliveries: pending rows of disabled or paused subscriptions are in
-- this index too, but under their own subscription_id, where the claim
-- never looks. On a large table build these first by hand with CREATE INDEX
-- CONCURRENTLY and the same names.
CREATE INDEX IF NOT EXISTS deliveries_sub_due_idx
    ON deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
-- The old claim's index, ordered by due time alone: stranded rows of
-- paused or disabled subscriptions sat at its head, and the planner may
-- still prefer it for the claim above. The new index serves everything it
-- did (a count of pending deliveries reads either).
DROP INDEX IF EXISTS deliveries_due_idx;
-- How many of a subscription's deliveries are in flight (at most its
-- max_in_flight entries are read).
CREATE INDEX IF NOT EXISTS deliveries_sub_in_flight_idx
    ON deliveries (subscription_id) WHERE status = 'in_flight';

-- An operational event, in the caller's transaction. p_route: the relay
-- routes such events (relay.event_types matches them); when it does not,
-- the event is recorded as processed, so that no worker dead-letters it
-- for want of a handler.
CREATE OR REPLACE FUNCTION pgeventd_subscription_event(p_type text, p_sub uuid, p_payload jsonb,
                                                       p_route boolean)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO events (event_type, aggregate_id, aggregate_type, payload, created_by, processed,
                        processed_at)
    VALUES (p_type, p_sub, 'subscription', p_payload, 'pgeventd relay', NOT p_route,
            CASE WHEN NOT p_route THEN now() END)
$$;

-- What one applied result does to its subscription: the breaker, automatic
-- disabling, and their events (each inserted once: when the subscription
-- goes from enabled to disabled, or from closed to open).
CREATE OR REPLACE FUNCTION pgeventd_subscription_result(
    p_sub uuid, p_delivery uuid, p_outcome text, p_http_status int, p_error text,
    p_breaker_failures int, p_breaker_cooldown_ms bigint, p_disable_after_ms bigint,
    p_route_events boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s subscriptions%ROWTYPE;
BEGIN
    SELECT * INTO s FROM subscriptions WHERE id = p_sub FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_outcome = 'delivered' THEN
        IF s.consecutive_failures <> 0 OR s.failing_since IS NOT NULL
           OR s.paused_until IS NOT NULL THEN
            UPDATE subscriptions
               SET consecutive_failures = 0, failing_since = NULL, paused_until = NULL
             WHERE id = p_sub;
        END IF;
        RETURN;
    END IF;
    IF p_outcome = 'gone' THEN
        IF s.enabled THEN
            UPDATE subscriptions
               SET enabled = false, disabled_at = now(),
                   disabled_reason = 'endpoint answered 410 Gone'
             WHERE id = p_sub;
            PERFORM pgeventd_subscription_event('pgeventd.subscription.disabled', p_sub,
                jsonb_build_object('subscription', s.name, 'reason', 'endpoint answered 410 Gone',
                                   'delivery_id', p_delivery, 'http_status', p_http_status),
            p_route_events);
        END IF;
        RETURN;
    END IF;
    s.consecutive_failures := s.consecutive_failures + 1;
    s.failing_since := coalesce(s.failing_since, now());
    IF p_breaker_failures > 0 AND s.consecutive_failures >= p_breaker_failures THEN
        IF s.enabled AND (s.paused_until IS NULL OR s.paused_until <= now()) THEN
            PERFORM pgeventd_subscription_event('pgeventd.subscription.breaker_opened', p_sub,
                jsonb_build_object('subscription', s.name,
                                   'consecutive_failures', s.consecutive_failures,
                                   'paused_for_ms', p_breaker_cooldown_ms,
                                   'delivery_id', p_delivery, 'http_status', p_http_status,
                                   'error', p_error),
            p_route_events);
        END IF;
        s.paused_until := now() + p_breaker_cooldown_ms * interval '1 millisecond';
    END IF;
    IF s.enabled AND p_disable_after_ms > 0
       AND s.failing_since < now() - p_disable_after_ms * interval '1 millisecond' THEN
        s.enabled := false;
        s.disabled_at := now();
        s.disabled_reason := format('every attempt failed for %s; last error: %s',
                                    now() - s.failing_since, p_error);
        PERFORM pgeventd_subscription_event('pgeventd.subscription.disabled', p_sub,
            jsonb_build_object('subscription', s.name, 'reason', s.disabled_reason,
                               'delivery_id', p_delivery, 'http_status', p_http_status),
            p_route_events);
    END IF;
    UPDATE subscriptions
       SET consecutive_failures = s.consecutive_failures, failing_since = s.failing_since,
           paused_until = s.paused_until, enabled = s.enabled, disabled_at = s.disabled_at,
           disabled_reason = s.disabled_reason
     WHERE id = p_sub;
END $$;

-- Record a round of results in one transaction, each fenced by its lease:
-- a result whose delivery is no longer in flight under that lease is
-- logged (applied false) and changes nothing. The arrays run in parallel,
-- one element per result; returns whether each was applied, in order.
-- outcome: delivered | retry | failed | gone. started_at in epoch seconds.
-- p_route_events: see pgeventd_subscription_event.
-- The rows locked for the update carry every field the update writes, so
-- it joins nothing but the table, by id: a round costs the same per result
-- however many it holds (a second join of the results to the updated rows
-- by position was planned as a nested loop over both, n^2 per round).
CREATE OR REPLACE FUNCTION pgeventd_finish_deliveries(
    p_id uuid[], p_lease bigint[], p_attempt int[], p_outcome text[], p_http_status int[],
    p_error text[], p_response text[], p_started_at float8[], p_duration_ms float8[],
    p_retry_in_ms bigint[], p_breaker_failures int, p_breaker_cooldown_ms bigint,
    p_disable_after_ms bigint, p_route_events boolean)
RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    v_applied boolean[];
    v_sub uuid[];
    v_delivery uuid[];
    v_outcome text[];
    v_status int[];
    v_error text[];
    v_failing uuid[];
BEGIN
    WITH r AS (
        SELECT * FROM unnest(p_id, p_lease, p_attempt, p_outcome, p_http_status, p_error,
                             p_response, p_started_at, p_duration_ms, p_retry_in_ms)
               WITH ORDINALITY AS r(id, lease, attempt, outcome, http_status, error, response,
                                    started_at, duration_ms, retry_in_ms, ord)),
    -- The rows still in flight under their lease, locked in id order (two
    -- rounds, or a round and the reclaim, cannot deadlock on them), with
    -- what the update writes into each.
    l AS (
        SELECT d.id, d.lease, r.ord, d.subscription_id AS sub, d.attempt,
               CASE WHEN r.outcome = 'delivered' THEN 'delivered'
                    WHEN r.outcome = 'retry' AND d.attempt < s.max_attempts THEN 'pending'
                    WHEN r.outcome = 'retry' THEN 'dead'
                    ELSE 'failed' END AS new_status,
               r.http_status, r.error, r.retry_in_ms
          FROM deliveries d JOIN r ON r.id = d.id AND r.lease = d.lease
          JOIN subscriptions s ON s.id = d.subscription_id
         WHERE d.status = 'in_flight'
         ORDER BY d.id
           FOR UPDATE OF d),
    u AS (
        UPDATE deliveries d
           SET status = l.new_status,
               locked_until = NULL,
               last_status = l.http_status,
               last_error = CASE WHEN l.new_status = 'dead'
                                 THEN format('gave up after %s attempts: %s', l.attempt, l.error)
                                 ELSE l.error END,
               next_attempt_at = CASE WHEN l.new_status = 'pending'
                                      THEN clock_timestamp()
                                           + l.retry_in_ms * interval '1 millisecond'
                                      ELSE d.next_attempt_at END,
               finished_at = CASE WHEN l.new_status = 'pending' THEN NULL
                                  ELSE clock_timestamp() END
          FROM l
         WHERE d.id = l.id AND d.lease = l.lease
        RETURNING l.ord, l.sub),
    -- Only a delivery still there gets an attempt: a result may come back
    -- after its delivery was deleted (retention, a subscription deleted),
    -- and its attempt would fail the foreign key, and with it the round.
    a AS (
        INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms,
                                       http_status, error, response_body, applied)
        SELECT r.id, r.attempt, to_timestamp(r.started_at), r.duration_ms, r.http_status,
               r.error, r.response, r.ord IN (SELECT u.ord FROM u)
          FROM r
         WHERE EXISTS (SELECT FROM deliveries x WHERE x.id = r.id))
    SELECT array_agg(u.ord IS NOT NULL ORDER BY r.ord),
           array_agg(u.sub ORDER BY r.ord) FILTER (WHERE u.ord IS NOT NULL),
           array_agg(r.id ORDER BY r.ord) FILTER (WHERE u.ord IS NOT NULL),
           array_agg(r.outcome ORDER BY r.ord) FILTER (WHERE u.ord IS NOT NULL),
           array_agg(r.http_status ORDER BY r.ord) FILTER (WHERE u.ord IS NOT NULL),
           array_agg(r.error ORDER BY r.ord) FILTER (WHERE u.ord IS NOT NULL)
      INTO v_applied, v_sub, v_delivery, v_outcome, v_status, v_error
      FROM r LEFT JOIN u ON u.ord = r.ord;

    IF v_sub IS NULL THEN
        RETURN coalesce(v_applied, '{}');
    END IF;
    v_failing := ARRAY(SELECT DISTINCT v_sub[i] FROM generate_subscripts(v_sub, 1) i
                        WHERE v_outcome[i] <> 'delivered');
    -- Subscriptions whose results were all delivered: one statement, which
    -- changes nothing in the common case (a healthy subscription).
    UPDATE subscriptions
       SET consecutive_failures = 0, failing_since = NULL, paused_until = NULL
     WHERE id = ANY (v_sub) AND id <> ALL (v_failing)
       AND (consecutive_failures <> 0 OR failing_since IS NOT NULL OR paused_until IS NOT NULL);
    -- The others, result by result in order (the breaker counts them).
    IF cardinality(v_failing) > 0 THEN
        FOR i IN 1 .. array_length(v_sub, 1) LOOP
            IF v_sub[i] = ANY (v_failing) THEN
                PERFORM pgeventd_subscription_result(v_sub[i], v_delivery[i], v_outcome[i],
                                                     v_status[i], v_error[i],
                                                     p_breaker_failures, p_breaker_cooldown_ms,
                                                     p_disable_after_ms, p_route_events);
            END IF;
        END LOOP;
    END IF;
    RETURN v_applied;
END $$;
