-- test.ordered (tests/test_handlers.c): one row per successful run, with
-- when its handler started and ended, so a test can check that a key's
-- events ran in order and never two at once. test_broken: events whose
-- test.ordered handler fails permanently while they are listed.
CREATE TABLE IF NOT EXISTS test_spans (
    seq        bigserial PRIMARY KEY,
    event_id   uuid NOT NULL,
    key        text NOT NULL,
    n          integer NOT NULL,
    attempt    integer NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS test_spans_key_idx ON test_spans (key, started_at);
CREATE TABLE IF NOT EXISTS test_broken (event_id uuid PRIMARY KEY);
