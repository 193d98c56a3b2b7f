-- sql-routes.sql -- two handlers of the service pgeventd replaces, written
-- as PostgreSQL functions that pgeventd calls through `routes` (see
-- sql-routes.conf beside this file, and "Handlers in SQL" in the README):
--
--   intro.completed        awards the introducer credits, once per intro,
--                          and marks the intro completed;
--   user.message.received  moves the user's last-activity timestamp.
--
-- Each function takes the claimed event as a row of the events table and
-- returns void. It runs inside pgeventd's batch transaction, behind the
-- event's savepoint: its writes commit with the event marked processed,
-- or roll back with it. A function asks for a retry with
--   RAISE EXCEPTION '...' USING ERRCODE = 'PGR01';
-- any other error it raises dead-letters the event (message, detail,
-- hint and SQLSTATE land in event_dead_letters.error_message).
--
-- Apply it after `pgeventd migrate` (it needs the events table):
--   psql -v ON_ERROR_STOP=1 -f sql-routes.sql
-- and, when pgeventd connects as a role of its own:
--   GRANT USAGE ON SCHEMA app TO pgeventd;
--   GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO pgeventd;
--   GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA app TO pgeventd;

CREATE SCHEMA IF NOT EXISTS app;

CREATE TABLE IF NOT EXISTS app.users (
    id uuid PRIMARY KEY,
    credits integer NOT NULL DEFAULT 0,
    last_active_at timestamptz
);

CREATE TABLE IF NOT EXISTS app.intros (
    id uuid PRIMARY KEY,
    introducer_id uuid NOT NULL REFERENCES app.users (id),
    status text NOT NULL DEFAULT 'pending'
);

-- One row per credit award: its key makes the award happen once per
-- intro, whatever replays or duplicate events say.
CREATE TABLE IF NOT EXISTS app.credit_awards (
    intro_id uuid PRIMARY KEY REFERENCES app.intros (id),
    user_id uuid NOT NULL REFERENCES app.users (id),
    amount integer NOT NULL,
    event_id uuid NOT NULL,
    awarded_at timestamptz NOT NULL DEFAULT now()
);

-- intro.completed, payload {"intro_id": "<uuid>", "credits": 10}
-- ("credits" optional, 10 by default).
CREATE OR REPLACE FUNCTION app.on_intro_completed(ev events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_intro app.intros%ROWTYPE;
    v_amount integer := 10;
BEGIN
    IF jsonb_typeof(ev.payload -> 'intro_id') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'intro.completed: payload.intro_id must be a string'
            USING ERRCODE = '22023',
                  DETAIL = format('payload: %s', left(ev.payload::text, 200)),
                  HINT = 'publish {"intro_id": "<uuid>"}';
    END IF;
    IF ev.payload ? 'credits' THEN
        v_amount := (ev.payload ->> 'credits')::integer;  -- 22P02 when not a number
    END IF;
    SELECT * INTO v_intro FROM app.intros WHERE id = (ev.payload ->> 'intro_id')::uuid
        FOR UPDATE;
    IF NOT FOUND THEN
        -- The intro may be in a transaction that has not committed yet.
        RAISE EXCEPTION 'intro % not found', ev.payload ->> 'intro_id'
            USING ERRCODE = 'PGR01', HINT = 'retried with backoff until max_attempts';
    END IF;
    INSERT INTO app.credit_awards (intro_id, user_id, amount, event_id)
    VALUES (v_intro.id, v_intro.introducer_id, v_amount, ev.id)
    ON CONFLICT (intro_id) DO NOTHING;
    IF FOUND THEN
        UPDATE app.users SET credits = credits + v_amount WHERE id = v_intro.introducer_id;
    END IF;
    UPDATE app.intros SET status = 'completed' WHERE id = v_intro.id;
END
$$;

-- user.message.received, payload {"user_id": "<uuid>"}: the user's last
-- activity is the newest message's created_at (events may come late or
-- out of order, so never move it back).
CREATE OR REPLACE FUNCTION app.on_user_message(ev events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE app.users
       SET last_active_at = greatest(last_active_at, ev.created_at)
     WHERE id = (ev.payload ->> 'user_id')::uuid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user % not found', ev.payload ->> 'user_id'
            USING ERRCODE = 'PGR01';
    END IF;
END
$$;
