-- 0003_retention.sql: indexes that let retention (retention.* in
-- pgeventd.conf) find old rows without scanning the tables.
--
-- Only processed rows are indexed by processed_at: the claim never reads
-- this index, and unprocessed rows are never deleted by retention.
CREATE INDEX IF NOT EXISTS events_processed_at_idx
    ON events (processed_at) WHERE processed;
CREATE INDEX IF NOT EXISTS delivery_attempts_started_at_idx
    ON delivery_attempts (started_at);
