-- 0007_ordering.sql: ordered event types -- one event of a key at a time,
-- in (created_at, id) order, a key whose head waits blocking only itself.
--
-- Which event types are ordered, and by what key, is configuration
-- (ordering.* in pgeventd.conf), not schema: producers write events as
-- before. The first claim that meets an ordered event "admits" it: it
-- writes the event's key into events.pgeventd_key, which takes the event
-- out of events_due_idx (the unordered claim's index) and into its key's
-- queue, and makes sure the key has its row in pgeventd_keys. From then on
-- workers claim keys, not events: a key's row, locked FOR UPDATE SKIP
-- LOCKED for the whole batch, is what makes its events run one at a time
-- across every worker of every instance.

-- The explicit key a producer may set (ordering.by_ordering_key types);
-- NULL means the event is not ordered.
ALTER TABLE events ADD COLUMN IF NOT EXISTS ordering_key text;
-- Set by pgeventd when it admits an ordered event: the key it is queued
-- under. NULL for unordered events and ordered ones not yet admitted.
ALTER TABLE events ADD COLUMN IF NOT EXISTS pgeventd_key text;

-- The unordered claim's index leaves admitted events out, so that events
-- waiting behind their key's head cost that claim nothing. (Same name as
-- 0004's; build it by hand with CREATE INDEX CONCURRENTLY under another
-- name first on a large table, then swap.)
DROP INDEX IF EXISTS events_due_idx;
CREATE INDEX events_due_idx
    ON events ((coalesce(next_attempt_at, created_at)), id)
    WHERE NOT processed AND pgeventd_key IS NULL;

-- A key's queue: its head is the first entry.
CREATE INDEX IF NOT EXISTS events_key_idx
    ON events (pgeventd_key, created_at, id)
    WHERE NOT processed AND pgeventd_key IS NOT NULL;

-- One row per key with admitted, unprocessed events (or parked). due_at is
-- when its head falls due (its backoff, or its "not before" time); NULL
-- while parked behind parked_event, a dead-lettered head under the block
-- policy, until a DBA replays or skips it (pgeventd unpark). The claim
-- reads pgeventd_keys_due_idx over (..., now()]: keys whose head waits in
-- backoff, and parked keys, are never visited.
CREATE TABLE IF NOT EXISTS pgeventd_keys (
    key          text PRIMARY KEY,
    due_at       timestamptz,
    parked_event uuid,
    parked_at    timestamptz,
    CHECK ((parked_event IS NULL) = (parked_at IS NULL)),
    CHECK (parked_event IS NULL OR due_at IS NULL)
);
CREATE INDEX IF NOT EXISTS pgeventd_keys_due_idx
    ON pgeventd_keys (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS pgeventd_keys_parked_idx
    ON pgeventd_keys (parked_at) WHERE parked_event IS NOT NULL;
ALTER TABLE pgeventd_keys SET (
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

-- Admission keys are split into 8 partitions (claim.c); each partition's
-- cursor is the due time up to which its ordered events have been read
-- (or the first one left, its key being run elsewhere). A pass starts a
-- second before it; a full pass, from time to time and before a worker
-- sleeps, from the start.
CREATE TABLE IF NOT EXISTS pgeventd_admit_cursor (
    part integer PRIMARY KEY,
    due  timestamptz NOT NULL
);
INSERT INTO pgeventd_admit_cursor (part, due)
    SELECT p, '-infinity' FROM generate_series(0, 7) p ON CONFLICT DO NOTHING;

-- Replay (UPDATE events SET processed = false), now also of an admitted
-- event: it goes back to its key's queue, and the key gets a row again if
-- its queue had emptied meanwhile, due now unless it is parked. Waiting
-- for the key's row lock here is waiting for the batch that runs the key,
-- so the key's owner never misses the replayed event. A key without a row
-- is, to admission, the admitting batch's own (claim.c): so the key's
-- admission partition lock (1885824375, hashtext(key) & 7) is taken first,
-- shared, to wait for a batch that may be running a newer event of the key
-- it admitted as free; else the replayed event could run at once beside it.
CREATE OR REPLACE FUNCTION pgeventd_replay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.attempts := 0;
    NEW.next_attempt_at := clock_timestamp();
    NEW.last_error := NULL;
    NEW.processed_at := NULL;
    IF NEW.pgeventd_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock_shared(1885824375, hashtext(NEW.pgeventd_key) & 7);
        INSERT INTO pgeventd_keys AS k (key, due_at)
            VALUES (NEW.pgeventd_key, NEW.next_attempt_at)
            ON CONFLICT (key) DO UPDATE SET due_at = least(k.due_at, excluded.due_at)
            WHERE k.parked_event IS NULL;
    END IF;
    IF NOT pg_try_advisory_xact_lock_shared(1885824374, 2) THEN
        PERFORM pg_notify('pgeventd_events', '');
    END IF;
    RETURN NEW;
END $$;
