-- Tables of the test-only handler pack (tests/test_handlers.c).
CREATE TABLE IF NOT EXISTS test_effects (
    seq        bigserial PRIMARY KEY,
    event_id   uuid NOT NULL,
    event_type text NOT NULL,
    worker     text NOT NULL DEFAULT current_setting('application_name'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS test_effects_event_id_idx ON test_effects (event_id);
