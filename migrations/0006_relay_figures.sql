-- 0006_relay_figures.sql: an index per finished status of deliveries, for
-- deliveries retention (retention.deliveries_after) and for the figures of
-- the health sampler and `pgeventd status` (src/figures.c).
--
-- Changes no row. Each finished delivery is in exactly one of them, added
-- when its status changes (an update that was never HOT: status is in the
-- predicates of the claim's and the lease's indexes); pending and in-flight
-- rows are in none.
--   - retention walks each of them from its oldest finished_at, batch by
--     batch, and never reads a pending or in-flight row;
--   - the sampler counts dead deliveries through deliveries_dead_idx (it
--     read the whole table every 5 s in every instance), and `status`
--     counts each status through its own index, delivered rows in the last
--     hour through a range of deliveries_delivered_idx.
-- On a large existing table build them first by hand with CREATE INDEX
-- CONCURRENTLY and the same names: this migration then finds them and does
-- not lock the table while it builds.
CREATE INDEX IF NOT EXISTS deliveries_delivered_idx
    ON deliveries (finished_at, id) WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS deliveries_failed_idx
    ON deliveries (finished_at, id) WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS deliveries_dead_idx
    ON deliveries (finished_at, id) WHERE status = 'dead';
