/*
 * figures.h -- the SQL of every figure the health sampler (sampler.c) and
 * `pgeventd status` (cmd_status.c) read, in one place so that the test of
 * their plans (tests/integration/t69_status_plans.sh, through
 * tests/figures_sql) EXPLAINs the very statements the binary runs.
 *
 * Each reads an index (migrations 0002 to 0006), never a whole table: what
 * it costs is the backlog, the last hour, or the rows of one status, not
 * the history. Figures over history that only grows (dead letters, dead
 * and delivered deliveries) read at most FIGURES_EXACT_UP_TO index entries
 * where they run every SAMPLER_INTERVAL_S (or are totals of history); past
 * that they are the planner's estimate (pg_class.reltuples of the table or
 * of the status's partial index), never below FIGURES_EXACT_UP_TO.
 */
#ifndef PGEVENTD_FIGURES_H
#define PGEVENTD_FIGURES_H

/* Counted exactly up to this many; beyond, estimated. */
#define FIGURES_EXACT_UP_TO 100000

/* One statement, for the test that prints them all. */
struct figure_query {
	const char *name; /* "sampler.dead_letters", "status.deliveries", ... */
	const char *sql;  /* takes no parameter */
};

/* ---- the health sampler, every SAMPLER_INTERVAL_S in every instance ---- */

/* How long the oldest due event has been due, in seconds (0: none). */
extern const char figures_events_oldest_due_sql[];
/* Unprocessed events. */
extern const char figures_events_pending_sql[];
/* Rows of event_dead_letters (exact up to FIGURES_EXACT_UP_TO). */
extern const char figures_dead_letters_sql[];
/* The planner's estimate of the same, when the above fails. */
extern const char figures_dead_letters_estimate_sql[];
/* Pending deliveries, and dead ones (exact up to FIGURES_EXACT_UP_TO). */
extern const char figures_deliveries_sql[];
/* Every subscription: name, enabled, disabled_reason, disabled_at,
 * consecutive_failures, failing_since, paused_until, and the last error of
 * an enabled one that is failing. */
extern const char figures_subscriptions_sql[];

/* ---- pgeventd status ---------------------------------------------------- */

/* One row: pending, due_now, scheduled_later, retrying,
 * oldest_pending_created_at, oldest_pending_age_s. */
extern const char figures_status_queue_sql[];
/* One row: queued, waiting, parked, parked_keys (JSON text: the first ten
 * parked keys, {key, head, parked_at}): keys of ordered event types. */
extern const char figures_status_keys_sql[];
/* Events processed in the last hour. */
extern const char figures_status_processed_sql[];
/* One row per event type with dead letters: event_type, count, latest;
 * most first. */
extern const char figures_status_dead_letters_sql[];
/* One row: pending, in_flight, delivered (exact up to FIGURES_EXACT_UP_TO),
 * delivered_estimated (whether delivered is an estimate),
 * delivered_last_hour, failed, dead. */
extern const char figures_status_deliveries_sql[];

/* Every statement above, ended by { NULL, NULL }. */
extern const struct figure_query figures_queries[];

#endif
