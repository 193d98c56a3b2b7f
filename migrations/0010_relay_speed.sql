-- 0010_relay_speed.sql: a round of results costs the same per result
-- however many it holds.
--
-- Changes no row. pgeventd_finish_deliveries() (0005) joined the round's
-- results to the updated rows a second time by position, and the planner,
-- which cannot count an unnest of parameters, made that a nested loop over
-- both: n^2 comparisons per round (65,280 for 256 results, three quarters
-- of the call). Here the rows locked for the update carry every field the
-- update writes, so it joins nothing but the table, by id.
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
