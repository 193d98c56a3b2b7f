-- 0001_events.sql: the events table producers INSERT into, the dead letters,
-- the claim index and the NOTIFY/replay triggers.
--
-- Written to also upgrade a database of the service pgeventd replaces: the
-- original columns are created only when missing, new ones are added, so
-- existing producers' INSERTs keep working unchanged.

CREATE TABLE IF NOT EXISTS events (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type     varchar(100) NOT NULL,
    aggregate_id   uuid,
    aggregate_type varchar(50),
    payload        jsonb NOT NULL,
    metadata       jsonb,
    processed      boolean DEFAULT false,
    version        integer DEFAULT 1,
    created_at     timestamptz DEFAULT now(),
    created_by     varchar(100)
);

-- The claim relies on these never being NULL (NOT NULL => `NOT processed`
-- and the (created_at, id) order are total).
ALTER TABLE events ALTER COLUMN id SET DEFAULT gen_random_uuid();
UPDATE events SET processed = false WHERE processed IS NULL;
UPDATE events SET created_at = now() WHERE created_at IS NULL;
ALTER TABLE events
    ALTER COLUMN processed SET DEFAULT false,
    ALTER COLUMN processed SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN created_at SET NOT NULL;

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    ADD COLUMN IF NOT EXISTS last_error      text,
    ADD COLUMN IF NOT EXISTS processed_at    timestamptz,
    ADD COLUMN IF NOT EXISTS idempotency_key text;

-- A unique constraint (not a partial index) so that producers can write
-- INSERT ... ON CONFLICT (idempotency_key) DO NOTHING; NULLs never clash.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'events'::regclass
                     AND conname = 'events_idempotency_key_key') THEN
        ALTER TABLE events ADD CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key);
    END IF;
END $$;

-- The claim walks this index in FIFO order; it only holds unprocessed rows,
-- so it stays small however large the table grows.
CREATE INDEX IF NOT EXISTS events_unprocessed_idx
    ON events (created_at, id) WHERE NOT processed;
CREATE INDEX IF NOT EXISTS events_event_type_created_at_idx
    ON events (event_type, created_at);

-- Wake the workers: one notification per INSERT statement, not per row.
CREATE OR REPLACE FUNCTION pgeventd_notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgeventd_events', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS events_notify_insert ON events;
CREATE TRIGGER events_notify_insert AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION pgeventd_notify_insert();

-- Replay: a DBA's `UPDATE events SET processed = false` gives the event a
-- fresh start and wakes the workers.
CREATE OR REPLACE FUNCTION pgeventd_replay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.attempts := 0;
    NEW.next_attempt_at := NULL;
    NEW.last_error := NULL;
    NEW.processed_at := NULL;
    PERFORM pg_notify('pgeventd_events', '');
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS events_replay ON events;
CREATE TRIGGER events_replay BEFORE UPDATE OF processed ON events
    FOR EACH ROW WHEN (OLD.processed AND NOT NEW.processed)
    EXECUTE FUNCTION pgeventd_replay();

CREATE TABLE IF NOT EXISTS event_dead_letters (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id            uuid NOT NULL,
    event_type          varchar(100) NOT NULL,
    payload             jsonb NOT NULL,
    error_message       text NOT NULL,
    retry_count         integer NOT NULL,
    original_created_at timestamptz NOT NULL,
    created_at          timestamptz DEFAULT now()
);
ALTER TABLE event_dead_letters ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE event_dead_letters
    ADD COLUMN IF NOT EXISTS handler  text,
    ADD COLUMN IF NOT EXISTS attempts integer;
CREATE INDEX IF NOT EXISTS event_dead_letters_event_id_idx ON event_dead_letters (event_id);
CREATE INDEX IF NOT EXISTS event_dead_letters_type_created_idx
    ON event_dead_letters (event_type, created_at);

-- Crash accounting: a worker counts here, on a second connection that
-- commits at once, every event it is about to run; the batch deletes its
-- rows when it commits. A row that survives means the process died (or
-- lost its database) while the event was in hand. Unlogged: losing the
-- counts in a database crash only forgives a few crashes.
CREATE UNLOGGED TABLE IF NOT EXISTS pgeventd_inflight (
    event_id uuid PRIMARY KEY,
    runs     integer NOT NULL,
    last_at  timestamptz NOT NULL DEFAULT now()
);
