/*
 * broker.h -- what the broker transports (NATS JetStream, Kafka) share: the
 * target url's parts, the event's fields read from the delivery body, and
 * the subject/topic templates filled from them.
 *
 * A broker target is a url, so a subscription to a broker is the same
 * subscriptions row as a webhook's:
 *
 *   nats://[user@]host[:port][,host2:port...]/<subject template>[?query]
 *   tls://...   the same, with TLS
 *   kafka://[user@]host:port[,host2:port...]/<topic template>[?query]
 *
 * Templates take {event_type}, {aggregate_type}, {aggregate_id} and {id}.
 * The body of a delivery is the stored JSON envelope (enqueue.c):
 * {"id", "type", "timestamp", "aggregate": {"id", "type"} or null, "data"}.
 */
#ifndef PGEVENTD_BROKER_H
#define PGEVENTD_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#define BROKER_MAX_PARAMS 32

/* A target url, split; every string is owned by the struct. */
struct broker_url {
	char *scheme; /* "nats", "tls", "kafka" (lower case) */
	char *user;   /* before '@', or NULL */
	char *hosts;  /* host:port[,host:port...] */
	char *path;   /* the template, without its leading '/' */
	int nparams;
	char *keys[BROKER_MAX_PARAMS], *values[BROKER_MAX_PARAMS]; /* decoded */
};

/* Split `target`; false with why in `err` (no secret is ever in a url). */
bool broker_url_parse(const char *target, struct broker_url *u, char *err, size_t errlen);
void broker_url_release(struct broker_url *u);
/* The value of query parameter `key`, or NULL. */
const char *broker_url_param(const struct broker_url *u, const char *key);
/* Whether a boolean parameter is set ("1", "true", "yes", "on"). */
bool broker_url_flag(const struct broker_url *u, const char *key);

/*
 * Whether a kafka:// url may set the librdkafka property `name` (a query
 * parameter with a dot). An allowlist: whoever writes a subscription's url
 * must not reach the properties that load a shared object
 * (plugin.library.paths, ssl.engine.location), run a command
 * (sasl.kerberos.kinit.cmd), hold a secret, turn TLS verification off or
 * undo what the transport sets (enable.idempotence, acks, timeouts).
 */
bool broker_kafka_property_allowed(const char *name);

/* Whether every property of kafka:// url `u` is allowed; false with the
 * first that is not named in `err`. */
bool broker_kafka_properties_ok(const struct broker_url *u, char *err, size_t errlen);

/* Whether `target`, a broker url, is one the transports take; false with
 * why in `err` (a Kafka property not allowed is named). */
bool broker_url_check(const char *target, char *err, size_t errlen);

/*
 * Whether a host of `hosts` ("host[:port],...", as in the url; a host
 * without a port takes `default_port`) resolves to an address that
 * relay.block_private_networks refuses (netaddr_blocked); true with the
 * host named in `err`. It resolves with getaddrinfo, blocking; the library
 * resolves again when it connects, so a name whose answer changes in
 * between gets through (the Kafka transport also checks the address
 * librdkafka connects to). A name that does not resolve is not refused:
 * the library's connect fails.
 */
bool broker_hosts_blocked(const char *hosts, const char *default_port, char *err, size_t errlen);

/* The fields of one event, read from a delivery body; strings borrowed
 * from `root`, "" when absent. */
struct broker_event {
	void *root; /* json_t, owned: broker_event_release */
	const char *id, *type, *time, *aggregate_type, *aggregate_id;
};

bool broker_event_parse(const char *body, struct broker_event *ev, char *err, size_t errlen);
void broker_event_release(struct broker_event *ev);

/* The ordering key: "aggregate_type/aggregate_id", or "" for an event
 * without an aggregate. Returns a malloc'd string, NULL when out of memory. */
char *broker_event_key(const struct broker_event *ev);

/*
 * Fill the template with the event's fields. With `subject_safe` (NATS)
 * a value's characters that a subject token cannot hold (whitespace, '*',
 * '>', control characters, '.') become '_', and an empty value becomes
 * "_"; only {event_type} keeps its dots (order.paid: two tokens), except
 * one that would make an empty token (leading, trailing, doubled).
 * Returns a malloc'd string, or NULL with why in `err` (an unknown
 * {field}, an unclosed brace).
 */
char *broker_expand(const char *tmpl, const struct broker_event *ev, bool subject_safe, char *err,
                    size_t errlen);

#endif
