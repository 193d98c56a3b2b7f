-- 0003_retention.sql: indexes that let retention (retention.* in
-- pgeventd.conf) walk old rows in order without scanning the tables.
--
-- Only processed rows are indexed by processed_at: the claim never reads
-- this index, and unprocessed rows are never deleted by retention.
-- On a large existing table, build them first by hand with CREATE INDEX
-- CONCURRENTLY and the same names: this migration then finds them and
-- does not lock the table while it builds.
CREATE INDEX IF NOT EXISTS events_processed_at_idx
    ON events (processed_at, id) WHERE processed;
CREATE INDEX IF NOT EXISTS delivery_attempts_started_at_idx
    ON delivery_attempts (started_at, id);
