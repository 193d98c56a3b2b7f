-- 0002_relay.sql: webhook subscriptions, their deliveries and the log of
-- every delivery attempt.
--
-- The relay handler inserts one deliveries row per matching enabled
-- subscription inside the event's batch transaction; the delivery thread
-- claims due rows with a lease (status in_flight, locked_until, attempt+1)
-- and writes its result back only where the attempt still matches.

CREATE TABLE IF NOT EXISTS subscriptions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                 text NOT NULL UNIQUE,
    url                  text NOT NULL CHECK (url ~* '^https?://'),
    -- One secret, or several separated by a space while rotating.
    secret               text NOT NULL,
    -- Event-type patterns with * wildcards, e.g. ["job.*", "order.created"].
    event_types          jsonb NOT NULL DEFAULT '["*"]'
                         CHECK (jsonb_typeof(event_types) = 'array'),
    signature_scheme     text NOT NULL DEFAULT 'standard'
                         CHECK (signature_scheme IN ('standard', 'timestamped_hex', 'body_hex')),
    -- NULL: the scheme's default header names.
    id_header            text,
    timestamp_header     text,
    signature_header     text,
    -- Extra request headers, {"Name": "value"}.
    headers              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    enabled              boolean NOT NULL DEFAULT true,
    timeout_ms           integer NOT NULL DEFAULT 15000 CHECK (timeout_ms BETWEEN 100 AND 600000),
    max_attempts         integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    created_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    disabled_reason      text,
    -- Health of the endpoint: the circuit breaker and automatic disabling.
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz,
    paused_until         timestamptz
);

CREATE SEQUENCE IF NOT EXISTS deliveries_lease_seq;

CREATE TABLE IF NOT EXISTS deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_type      text NOT NULL,
    -- The request body, fixed at creation: byte-identical across retries.
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'in_flight', 'delivered', 'failed', 'dead')),
    attempt         integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    -- A fresh token from deliveries_lease_seq at every claim: results and
    -- releases are fenced on it (attempt only counts, and a replay or a
    -- retry resets it, so it cannot fence).
    lease           bigint,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due_idx
    ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_lease_idx
    ON deliveries (locked_until) WHERE status = 'in_flight';
CREATE INDEX IF NOT EXISTS deliveries_subscription_idx
    ON deliveries (subscription_id, created_at);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    http_status   integer,
    error         text,
    response_body text,
    -- false when the result arrived after the lease had been taken over.
    applied       boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery_idx
    ON delivery_attempts (delivery_id, attempt);

-- Does an event type match a pattern with * wildcards?
CREATE OR REPLACE FUNCTION pgeventd_pattern_match(pattern text, event_type text)
RETURNS boolean LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT event_type LIKE replace(replace(replace(replace(pattern, '\', '\\'), '%', '\%'),
                                           '_', '\_'), '*', '%')
$$;

-- Wake the delivery thread when deliveries are queued.
CREATE OR REPLACE FUNCTION pgeventd_notify_delivery() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgeventd_deliveries', '');
    RETURN NULL;
END $$;

-- (Inserts only: the relay schedules its own retries, and `pgeventd
-- deliveries retry` notifies itself; a trigger on every result would cost
-- each delivery a notification.)
DROP TRIGGER IF EXISTS deliveries_notify ON deliveries;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION pgeventd_notify_delivery();

-- Record the result of one attempt, fenced by its lease: a result whose
-- lease was taken over (the delivery is no longer in flight under that
-- lease) is logged but changes nothing. Returns whether it was applied.
-- outcome: delivered | retry | failed | gone.
CREATE OR REPLACE FUNCTION pgeventd_finish_delivery(
    p_id uuid, p_lease bigint, p_attempt int, p_outcome text, p_http_status int, p_error text,
    p_response text, p_started_at timestamptz, p_duration_ms float8, p_retry_in_ms bigint,
    p_breaker_failures int, p_breaker_cooldown_ms bigint, p_disable_after_ms bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    d deliveries%ROWTYPE;
    s subscriptions%ROWTYPE;
    new_status text;
    applied boolean;
BEGIN
    SELECT * INTO d FROM deliveries
     WHERE id = p_id AND lease = p_lease AND status = 'in_flight' FOR UPDATE;
    applied := FOUND; -- FOUND changes with every statement: keep it now
    INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status,
                                   error, response_body, applied)
    VALUES (p_id, p_attempt, p_started_at, p_duration_ms, p_http_status, p_error, p_response,
            applied);
    IF NOT applied THEN
        RETURN false;
    END IF;
    -- No row lock here: a delivered result, the common case, usually
    -- changes nothing in its subscription; the updates below lock it.
    SELECT * INTO s FROM subscriptions WHERE id = d.subscription_id;

    IF p_outcome = 'delivered' THEN
        new_status := 'delivered';
    ELSIF p_outcome = 'retry' AND d.attempt < s.max_attempts THEN
        new_status := 'pending';
    ELSIF p_outcome = 'retry' THEN
        new_status := 'dead';
    ELSE
        new_status := 'failed';
    END IF;

    UPDATE deliveries
       SET status = new_status,
           locked_until = NULL,
           last_status = p_http_status,
           last_error = CASE WHEN new_status = 'dead'
                             THEN format('gave up after %s attempts: %s', d.attempt, p_error)
                             ELSE p_error END,
           next_attempt_at = CASE WHEN new_status = 'pending'
                                  THEN clock_timestamp() + p_retry_in_ms * interval '1 millisecond'
                                  ELSE next_attempt_at END,
           finished_at = CASE WHEN new_status = 'pending' THEN NULL ELSE clock_timestamp() END
     WHERE id = p_id AND lease = p_lease;

    IF p_outcome = 'delivered' THEN
        IF s.consecutive_failures <> 0 OR s.failing_since IS NOT NULL
           OR s.paused_until IS NOT NULL THEN
            UPDATE subscriptions
               SET consecutive_failures = 0, failing_since = NULL, paused_until = NULL
             WHERE id = s.id;
        END IF;
    ELSIF p_outcome = 'gone' THEN
        UPDATE subscriptions
           SET enabled = false, disabled_at = now(),
               disabled_reason = 'endpoint answered 410 Gone'
         WHERE id = s.id;
    ELSE
        UPDATE subscriptions
           SET consecutive_failures = consecutive_failures + 1,
               failing_since = coalesce(failing_since, now()),
               paused_until = CASE WHEN p_breaker_failures > 0
                                        AND consecutive_failures + 1 >= p_breaker_failures
                                   THEN now() + p_breaker_cooldown_ms * interval '1 millisecond'
                                   ELSE paused_until END
         WHERE id = s.id;
        UPDATE subscriptions
           SET enabled = false, disabled_at = now(),
               disabled_reason = format('every attempt failed for %s; last error: %s',
                                        now() - failing_since, p_error)
         WHERE id = s.id AND enabled AND p_disable_after_ms > 0
           AND failing_since < now() - p_disable_after_ms * interval '1 millisecond';
    END IF;
    RETURN true;
END $$;
