/*
 * relay.h -- the delivery thread: sends queued deliveries through their
 * transport (transport.h; HTTP with the libcurl multi interface), up to
 * relay.concurrency at once.
 *
 * It claims due deliveries with a lease (delivery.h), hands each to its
 * transport, and records the result through pgeventd_finish_delivery(),
 * which applies it only while the delivery is still in flight under that
 * lease: a result that arrives after its lease expired and the delivery
 * was taken again changes nothing. Expired leases are put back to pending
 * every few seconds.
 *
 * On shutdown it stops claiming, lets the requests in flight finish within
 * shutdown_timeout_ms, and puts the leases of the rest back to pending.
 */
#ifndef PGEVENTD_RELAY_H
#define PGEVENTD_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "worker.h"

struct relay_state {
	atomic_int connected; /* 1 while its database connection is up */
	atomic_int in_flight; /* requests in flight */
	/* Monotonic seconds of the last loop turn that made progress: any turn
	 * while claims work, none from a failed claim or connection attempt to
	 * the next claim that works. */
	_Atomic double heartbeat;
	atomic_int failing;   /* 1 from a failed claim or connection to the next claim that works */
	char last_error[256]; /* why; read through relay_last_error() */
	atomic_uint_fast64_t delivered, retried, failed; /* results applied */
};

struct relay;

/* Start the thread (only when relay.event_types is not empty). It sets
 * rt->relay_done when it ends. Returns NULL when it could not. */
struct relay *relay_start(struct runtime *rt);

/* Join the thread and free r. NULL is a no-op. */
void relay_join(struct relay *r);

/* Counters for /health; NULL when r is NULL. */
const struct relay_state *relay_state(const struct relay *r);

/* Copy why the relay is failing (the server's first line, no DETAIL)
 * into buf; "" when it is not. Thread-safe. */
void relay_last_error(const struct relay_state *st, char *buf, size_t len);

#endif
