/*
 * worker.h -- one claim-loop thread: wait for NOTIFY or the poll interval,
 * claim a FIFO batch with FOR UPDATE SKIP LOCKED, run each event's handler,
 * record outcomes, commit; reconnect on its own when the database goes.
 */
#ifndef PGEVENTD_WORKER_H
#define PGEVENTD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "conf.h"
#include "handlers/registry.h"
#include "runtime.h"

/* What a worker's last look before sleeping found of the wake-up lock. */
enum worker_sleep_state {
	SLEEP_MINE = 0, /* this worker holds it: producers notify, it may sleep */
	SLEEP_OTHER,    /* another session holds it: producers notify all listeners */
	SLEEP_BUSY,     /* producers hold it shared: nobody would be notified */
};

struct worker {
	int id;                   /* 1-based, for logs and metrics */
	char name[32];            /* "worker-1" */
	struct runtime *rt;       /* borrowed */
	const struct config *cfg; /* this loop turn's: a reference from runtime_config_refresh */
	pthread_t thread;
	PGconn *conn; /* claim transaction + LISTEN; owned */
	PGconn *side; /* crash accounting, autocommit; owned */
	pthread_mutex_t cancel_lock;
	PGcancel *cancel;       /* for worker_cancel(); owned, under cancel_lock */
	int64_t next_due_ms;    /* monotonic ms when the next event falls due, 0 unknown */
	int claim_limit;        /* rows the next claim takes (grows with the backlog) */
	unsigned admit_turn;    /* ordered types: the partition admission tries first */
	char cursor[64];        /* due time (text) where the last claim ended; "" none */
	char claim_now[64];     /* ordered types: now() of the last claim (text); "" none */
	double next_full_claim; /* monotonic s: the next claim reads the index from its start */
	bool last_claim_full;   /* the last claim read the index from its start (ordered types:
	                           and admitted for every free partition) */
	bool last_look;         /* the next claim is the last look before sleeping or stopping */
	bool sleep_lock;        /* holds the wake-up advisory lock (migration 0004) */
	bool rearm;             /* let go of it on waking: the next look takes it first */
	enum worker_sleep_state sleep_state; /* what the last armed claim found */
	int short_wait_ms;      /* wait before looking again while producers hold the lock */
	int timeout_applied_ms; /* handler_timeout_ms set on `conn`; 0 none yet */
	atomic_int connected;   /* 1 while both connections are up */
	_Atomic double connected_changed_at; /* wall clock seconds `connected` last changed */
	_Atomic double last_claim_at; /* wall clock seconds of the last completed claim cycle */
	/* Monotonic seconds the loop last made progress: a claim cycle
	 * completed (committed, or nothing due), a wait for work on a healthy
	 * connection, an event handled while batches are not failing. Never
	 * refreshed by a failure's back-off or a reconnect attempt. */
	_Atomic double heartbeat;
	atomic_int failing;   /* 1 from a failed batch or connection to the next completed claim */
	char last_error[256]; /* why it is failing; read through worker_last_error() */
};

/* Start the thread on a zeroed `w`. Returns false (failure logged) if it could not. */
bool worker_start(struct worker *w, int id, struct runtime *rt);

/* For batch.c: an event's handler ran (progress, unless the loop is in a
 * failing spell), and a batch failed with `err` (no progress until a claim
 * completes again; /health shows the error). */
void worker_event_ran(struct worker *w);
void worker_set_failing(struct worker *w, const char *err);

/* Join the thread and free what the worker holds. */
void worker_join(struct worker *w);

/* Copy why the worker is failing (its last batch or connection error,
 * the server's first line, no DETAIL) into buf; "" when it is not.
 * Safe from another thread, also before the worker starts. */
void worker_last_error(const struct worker *w, char *buf, size_t len);

/* Ask the server to cancel the statement the worker is running (used on
 * abort); safe from another thread. */
void worker_cancel(struct worker *w);

#endif
