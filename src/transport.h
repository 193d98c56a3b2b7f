/*
 * transport.h -- what the delivery core (relay.c) asks of a transport: send
 * one claimed delivery, report how it ended, wait for its sockets.
 *
 * The core owns everything that is the same whatever the wire: claiming with
 * leases, fencing by lease token, the retry policy, the breaker, writing
 * results, the loop and reconnecting. A transport owns the wire: connections,
 * requests, what the receiver's answer means. HTTP is transport_http.c.
 *
 * Adding a transport (NATS, Kafka, ...): write transport_<name>.c defining a
 * `const struct transport_ops transport_<name>`, declare it below, and add
 * one row to the table in relay.c; the loop does not change. The core sends
 * each delivery through the first row whose serves() accepts its target (the
 * subscription's url), else through the first row.
 */
#ifndef PGEVENTD_TRANSPORT_H
#define PGEVENTD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "webhook.h"

/* Size of the error buffers the relay fills (transport errors, database
 * errors of a result): what one delivery_attempts.error keeps. */
#define TRANSPORT_ERRLEN 512

/* Bytes of a response kept in delivery_attempts.response_body. */
#define TRANSPORT_RESPONSE_KEEP 4096

/* One claimed delivery, as the core hands it over: borrowed strings, valid
 * during send() only (a transport copies what it keeps). */
struct transport_message {
	const char *id;     /* the delivery id: the receiver's idempotency key */
	const char *body;   /* byte-identical on every attempt */
	const char *target; /* where to: the subscription's url */
	const char *secret; /* the subscription's secret(s), see sign.h */
	const char *scheme; /* signature scheme name, see sign.h */
	const char *id_header, *timestamp_header, *signature_header; /* "" = scheme's */
	const char *headers; /* JSON object of extra headers */
	long timeout_ms;     /* the whole attempt */
	/* Set for a delivery of an ordered subscription whose event has a
	 * key: "<subscription id> <key>", an opaque string. The core already
	 * sends at most one delivery of a key at a time (the claim never hands
	 * over the next before the head has ended, migration 0009); a broker
	 * transport also keeps at most one unacknowledged message per key, so
	 * that a head sent again after its lease ran out, while its first send
	 * is still unacknowledged here, is published behind it and fails with
	 * it. NULL: unordered. HTTP ignores it. */
	const char *order_key;
};

/* How an attempt ended, filled by the transport before it calls `done`. */
struct transport_result {
	enum webhook_verdict verdict;
	long status;              /* the receiver's status code; 0 = none (transport error) */
	long long retry_after_ms; /* the receiver's hint, capped; -1 = none: the policy decides */
	char error[TRANSPORT_ERRLEN];               /* "" when delivered */
	char response[TRANSPORT_RESPONSE_KEEP + 1]; /* the answer's first bytes, not terminated */
	size_t response_len;
};

/* A descriptor to wait on, with poll(2)'s POLLIN/POLLOUT/... bits. */
struct transport_waitfd {
	int fd;
	short events, revents;
};

/* Called by progress() for each finished send, with the `owner` it was
 * given; the result pointed to by send()'s `res` is filled by then. */
typedef void transport_done_fn(void *arg, void *owner);

struct transport_ops {
	const char *name; /* for logs: "http" */
	/* Whether this transport sends to `target` (a subscription's url). */
	bool (*serves)(const char *target);
	/* Per-thread state for up to `slots` sends at once, configured with
	 * `rc`; NULL when it cannot be made. */
	void *(*open)(const struct relay_config *rc, int slots);
	void (*close)(void *tp);
	/* A new configuration (SIGHUP): it applies to the sends that follow.
	 * `rc` stays valid until the next configure() or close(). */
	void (*configure)(void *tp, const struct relay_config *rc);
	/*
	 * Start sending `msg`; the outcome goes into `*res` (owned by the
	 * caller, valid until done or cancel) and `done` is later called with
	 * `owner`. Returns a handle for cancel(), or NULL with why in `err`
	 * when the message cannot be sent at all (a bad header, an unusable
	 * secret): a permanent failure of that delivery.
	 */
	void *(*send)(void *tp, const struct transport_message *msg, struct transport_result *res,
	              void *owner, char *err, size_t errlen);
	/* Drop an unfinished send (shutdown); `done` is not called for it. */
	void (*cancel)(void *tp, void *handle);
	/* Move the sends along without blocking; call `done` for each that
	 * finished. Its handle is freed after `done` returns. */
	void (*progress)(void *tp, transport_done_fn *done, void *arg);
	/* Block until a socket of this transport or one of `fds` is ready, or
	 * timeout_ms passes; fills the revents of `fds`. The core waits in the
	 * table's first row. */
	void (*wait)(void *tp, struct transport_waitfd *fds, unsigned nfds, int timeout_ms);
	/* Optional, for the other rows: the descriptors the first row's wait
	 * must also watch for this transport, up to `max`; how many. */
	unsigned (*waitfds)(void *tp, struct transport_waitfd *fds, unsigned max);
};

/* HTTP(S) POST with libcurl's multi interface: transport_http.c. */
extern const struct transport_ops transport_http;
/* NATS JetStream publishes with acks, libnats: transport_nats.c. */
extern const struct transport_ops transport_nats;
/* Kafka, an idempotent producer, librdkafka: transport_kafka.c. */
extern const struct transport_ops transport_kafka;

#endif
