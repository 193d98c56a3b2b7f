-- 0001_buddy.sql: the tables of the buddy pack (handlers/buddy/buddy.c).
--
-- buddy_system_events keeps every buddy event as it arrived (the audit trail
-- and the input of SROI / volunteer-impact analytics); the four domain
-- tables hold the matches and what happened within them. Ids are the Buddy
-- System's own (text, at most 100 characters); every domain row records the
-- pgeventd event (events.id) that wrote it.

-- Same shape as the buddy-connector service's table, so a database that
-- already has it is upgraded in place.
CREATE TABLE IF NOT EXISTS buddy_system_events (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       uuid NOT NULL UNIQUE,          -- events.id: one row per event
    event_type     varchar(100) NOT NULL,
    user_id        varchar(100),                  -- the event's primary user, for indexing
    timestamp      timestamptz NOT NULL,          -- events.created_at
    payload        jsonb NOT NULL,                -- the event's data, as sent
    correlation_id uuid,                          -- events.metadata->>'correlationId'
    processed_at   timestamptz,                   -- when the handler wrote the domain rows
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS buddy_events_user_timestamp_idx
    ON buddy_system_events (user_id, timestamp);
CREATE INDEX IF NOT EXISTS buddy_events_event_type_idx ON buddy_system_events (event_type);
-- The service also indexed event_id on its own; the UNIQUE constraint above
-- already is that index, and a second copy would only slow every insert.

-- The domain tables are created without IF NOT EXISTS on purpose: a table of
-- the same name but another shape must stop `pgeventd migrate` with an
-- error, not fail every event later.
CREATE TABLE buddy_matches (
    match_id         varchar(100) PRIMARY KEY,
    participant_id   varchar(100) NOT NULL,
    buddy_id         varchar(100) NOT NULL,
    program_id       varchar(100),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    matched_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    end_reason       text,
    created_event_id uuid NOT NULL,               -- the buddy.match.created event
    ended_event_id   uuid,                        -- the buddy.match.ended event
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buddy_matches_participant_idx ON buddy_matches (participant_id);
CREATE INDEX buddy_matches_buddy_idx ON buddy_matches (buddy_id);

-- Activities logged within a match (hangout, workshop, ...).
CREATE TABLE buddy_events (
    activity_id      varchar(100) PRIMARY KEY,
    match_id         varchar(100) NOT NULL REFERENCES buddy_matches (match_id),
    activity_type    text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    duration_minutes integer CHECK (duration_minutes >= 0),
    notes            text,
    event_id         uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buddy_events_match_idx ON buddy_events (match_id, occurred_at);

CREATE TABLE buddy_checkins (
    checkin_id    varchar(100) PRIMARY KEY,
    match_id      varchar(100) NOT NULL REFERENCES buddy_matches (match_id),
    user_id       varchar(100) NOT NULL,
    mood          smallint NOT NULL CHECK (mood BETWEEN 1 AND 5),
    checked_in_at timestamptz NOT NULL,
    notes         text,
    event_id      uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buddy_checkins_match_idx ON buddy_checkins (match_id, checked_in_at);

CREATE TABLE buddy_feedback (
    feedback_id  varchar(100) PRIMARY KEY,
    match_id     varchar(100) NOT NULL REFERENCES buddy_matches (match_id),
    from_user_id varchar(100) NOT NULL,
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment      text,
    submitted_at timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buddy_feedback_match_idx ON buddy_feedback (match_id, submitted_at);
