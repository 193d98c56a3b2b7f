-- Tables scripts/bench reads, written by the test-only handler pack.
-- test.stamp: when its handler started, by the server's clock (one row per
-- run of the handler; a second row for an event would mean it ran twice).
CREATE TABLE IF NOT EXISTS test_stamps (
    event_id   uuid NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS test_stamps_event_id_idx ON test_stamps (event_id);
