-- 0009_ordered_deliveries.sql: ordered subscriptions -- a subscription's
-- deliveries of one key go one at a time, in the order they were queued,
-- and a head in backoff holds only its own key of its own subscription.
--
-- A delivery of an ordered subscription carries its event's key (order_key:
-- 'k:' || events.ordering_key, else 'a:' || aggregate_type || ':' ||
-- aggregate_id, the same strings as ordered event types use; NULL: the
-- event has neither, and the delivery is unordered) and a place in its
-- key's queue (seq). Of a key's unfinished deliveries (pending or
-- in_flight) only the first, its head, is ever due or in flight; the
-- others wait with next_attempt_at = 'infinity', which keeps them behind
-- every due row of deliveries_sub_due_idx: the claim never reads them, so
-- its cost does not grow with how many wait. When the head ends
-- (delivered, failed, dead, or deleted) the next one is made due, in the
-- same transaction (pgeventd_order_next, by trigger).
--
-- Every change to a key's queue -- a delivery joining it (queued,
-- replayed, retried) or leaving it -- holds the advisory lock
-- pgeventd_order_lock_key(subscription, key) to its transaction's end
-- (the triggers take it): whichever of two such transactions comes second
-- sees what the first did, so no key is left without a head and none has
-- two. Statements that touch several keys take
-- their keys' locks in lock order first (pgeventd_order_lock: enqueue.c,
-- the relay's results and lease reclaim, `deliveries retry`), so that they
-- cannot deadlock on them.
--
-- Changes no delivery: the ones queued before stay unordered.

-- The producer's explicit key (also added by 0007_ordering.sql; either may
-- come first).
ALTER TABLE events ADD COLUMN IF NOT EXISTS ordering_key text;

-- Deliveries of one key one at a time, in order (pgeventd subscriptions
-- add|update --ordered).
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS ordered boolean NOT NULL DEFAULT false;
-- A broker url's ?ordered=1 (0008) asked for the same, in the transport
-- only; the column replaces it.
UPDATE subscriptions SET ordered = true
 WHERE NOT ordered AND url ~* '^(nats|tls|kafka)://[^?]*\?(.*&)?ordered=(1|true|yes|on)(&|$)';

ALTER TABLE deliveries
    ADD COLUMN IF NOT EXISTS order_key text,
    ADD COLUMN IF NOT EXISTS seq bigint;
-- seq: set from it when a delivery joins its key's queue (pgeventd_order_join);
-- NULL for unordered deliveries.
CREATE SEQUENCE IF NOT EXISTS deliveries_seq;

-- A key's queue, head first; only ordered rows not finished.
CREATE INDEX IF NOT EXISTS deliveries_order_idx
    ON deliveries (subscription_id, order_key, seq)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'in_flight');

-- The advisory lock of one key of one subscription (transaction-scoped,
-- in the one-bigint space: the two-int locks of 0004 and retention never
-- meet it).
CREATE OR REPLACE FUNCTION pgeventd_order_lock_key(p_sub uuid, p_key text)
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT hashtextextended(p_sub::text || '/' || p_key, 1885824374)
$$;

-- Take the locks of the keys of deliveries p_ids (ordered ones only), in
-- lock order; how many. For statements that then change several keys. In
-- PL/pgSQL, so that its query is planned once per session, and an empty
-- array (a round of results without an ordered delivery) costs no query.
CREATE OR REPLACE FUNCTION pgeventd_order_lock(p_ids uuid[])
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_key bigint;
    v_n bigint := 0;
BEGIN
    IF coalesce(cardinality(p_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    FOR v_key IN SELECT DISTINCT pgeventd_order_lock_key(subscription_id, order_key)
                   FROM deliveries WHERE id = ANY (p_ids) AND order_key IS NOT NULL
                  ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(v_key);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;

-- The advisory lock of a subscription's being ordered: a delivery joining
-- one of its keys holds it shared, from before it reads
-- subscriptions.ordered to its transaction's end; turning ordered off
-- (pgeventd_order_off) holds it exclusively. So either the join sees
-- ordered = false, or the turning off waits for the join's commit and
-- then sees its delivery: none is left waiting at 'infinity' behind a
-- head that is no longer ordered. (Keys are 'k:...' or 'a:...': the
-- empty key is no key's.)
CREATE OR REPLACE FUNCTION pgeventd_order_sub_lock_key(p_sub uuid)
RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT pgeventd_order_lock_key(p_sub, '')
$$;

-- A delivery joins its key's queue (inserted, or pending again after it
-- had finished: a replay, `deliveries retry`): at the end, and due only
-- when nothing else of the key is unfinished.
CREATE OR REPLACE FUNCTION pgeventd_order_join() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(pgeventd_order_sub_lock_key(NEW.subscription_id));
    -- retried after its subscription stopped being ordered: unordered now
    -- (a statement of its own, after the lock: it sees a turning off that
    -- committed while it waited)
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE id = NEW.subscription_id AND ordered) THEN
        NEW.order_key := NULL;
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(pgeventd_order_lock_key(NEW.subscription_id, NEW.order_key));
    NEW.seq := nextval('deliveries_seq');
    -- a statement of its own: it sees what committed while it waited
    IF EXISTS (SELECT 1 FROM deliveries
                WHERE subscription_id = NEW.subscription_id AND order_key = NEW.order_key
                  AND status IN ('pending', 'in_flight') AND id <> NEW.id) THEN
        NEW.next_attempt_at := 'infinity';
    ELSIF NEW.next_attempt_at = 'infinity' THEN
        NEW.next_attempt_at := now();
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS deliveries_order_insert ON deliveries;
CREATE TRIGGER deliveries_order_insert BEFORE INSERT ON deliveries
    FOR EACH ROW WHEN (NEW.order_key IS NOT NULL)
    EXECUTE FUNCTION pgeventd_order_join();
DROP TRIGGER IF EXISTS deliveries_order_requeue ON deliveries;
CREATE TRIGGER deliveries_order_requeue BEFORE UPDATE ON deliveries
    FOR EACH ROW WHEN (NEW.order_key IS NOT NULL AND NEW.status = 'pending'
                       AND OLD.status NOT IN ('pending', 'in_flight'))
    EXECUTE FUNCTION pgeventd_order_join();

-- A delivery left its key's queue (finished, or deleted): when the key
-- has no head now, its first waiting delivery becomes due, and the relays
-- are woken for it.
CREATE OR REPLACE FUNCTION pgeventd_order_next() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_next uuid;
BEGIN
    PERFORM pg_advisory_xact_lock(pgeventd_order_lock_key(OLD.subscription_id, OLD.order_key));
    SELECT id INTO v_next FROM deliveries
     WHERE subscription_id = OLD.subscription_id AND order_key = OLD.order_key
       AND status IN ('pending', 'in_flight')
     ORDER BY seq LIMIT 1;
    IF FOUND THEN
        UPDATE deliveries SET next_attempt_at = now()
         WHERE id = v_next AND status = 'pending' AND next_attempt_at = 'infinity';
        IF FOUND THEN
            PERFORM pg_notify('pgeventd_deliveries', '');
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS deliveries_order_finish ON deliveries;
CREATE TRIGGER deliveries_order_finish AFTER UPDATE ON deliveries
    FOR EACH ROW WHEN (OLD.order_key IS NOT NULL AND OLD.status IN ('pending', 'in_flight')
                       AND NEW.status NOT IN ('pending', 'in_flight'))
    EXECUTE FUNCTION pgeventd_order_next();
DROP TRIGGER IF EXISTS deliveries_order_delete ON deliveries;
CREATE TRIGGER deliveries_order_delete AFTER DELETE ON deliveries
    FOR EACH ROW WHEN (OLD.order_key IS NOT NULL AND OLD.status IN ('pending', 'in_flight'))
    EXECUTE FUNCTION pgeventd_order_next();

-- A subscription no longer ordered: its waiting deliveries are due at
-- once, and none is ordered any more. It first waits for the deliveries
-- joining its keys (pgeventd_order_sub_lock_key), so that it sees them.
CREATE OR REPLACE FUNCTION pgeventd_order_off() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(pgeventd_order_sub_lock_key(NEW.id));
    UPDATE deliveries
       SET order_key = NULL,
           next_attempt_at = CASE WHEN next_attempt_at = 'infinity' THEN now()
                                  ELSE next_attempt_at END
     WHERE subscription_id = NEW.id AND order_key IS NOT NULL
       AND status IN ('pending', 'in_flight');
    PERFORM pg_notify('pgeventd_deliveries', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS subscriptions_order_off ON subscriptions;
CREATE TRIGGER subscriptions_order_off AFTER UPDATE OF ordered ON subscriptions
    FOR EACH ROW WHEN (OLD.ordered AND NOT NEW.ordered)
    EXECUTE FUNCTION pgeventd_order_off();

-- `pgeventd deliveries retry`: failed and dead deliveries p_ids start over
-- (attempts reset, due now); how many. The ordered ones join the end of
-- their keys' queues (pgeventd_order_join) one at a time, in the order
-- they were first queued (seq): one UPDATE of several of a key would
-- queue them in whatever order it met the rows. Their keys are locked
-- first, in lock order.
CREATE OR REPLACE FUNCTION pgeventd_retry_deliveries(p_ids uuid[])
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_id uuid;
    v_n bigint;
    v_one bigint;
BEGIN
    PERFORM pgeventd_order_lock(p_ids);
    UPDATE deliveries
       SET status = 'pending', attempt = 0, next_attempt_at = now(), last_error = NULL,
           finished_at = NULL, locked_until = NULL
     WHERE id = ANY (p_ids) AND status IN ('failed', 'dead') AND order_key IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    FOR v_id IN SELECT id FROM deliveries
                 WHERE id = ANY (p_ids) AND status IN ('failed', 'dead')
                   AND order_key IS NOT NULL
                 ORDER BY seq, id LOOP
        UPDATE deliveries
           SET status = 'pending', attempt = 0, next_attempt_at = now(), last_error = NULL,
               finished_at = NULL, locked_until = NULL
         WHERE id = v_id AND status IN ('failed', 'dead');
        GET DIAGNOSTICS v_one = ROW_COUNT;
        v_n := v_n + v_one;
    END LOOP;
    RETURN v_n;
END $$;
