/*
 * transport_kafka.c -- the relay's Kafka transport: an idempotent producer
 * per cluster (librdkafka).
 *
 * A delivery counts as delivered only on its delivery report. librdkafka
 * works on its own threads and queues the reports; its main queue writes
 * an eventfd when it fills (rd_kafka_queue_io_event_enable), which the
 * relay's wait watches (waitfds), and progress() serves the queue with
 * rd_kafka_poll on the relay's thread, where the report callback runs.
 *
 * Target: kafka://[user@]host:port[,host:port...]/<topic template>[?query].
 * The query takes key=<template> (default: the event's ordering_key for an
 * ordered subscription's message when the producer set one, else
 * {aggregate_type}/{aggregate_id}; an event without either has no key), source=
 * (ce_source), and the librdkafka properties of an allowlist
 * (broker_kafka_property_allowed: security.protocol, sasl.mechanisms,
 * ssl.ca.location, tuning, ...); any other name with a dot is refused, as
 * some load a shared object or run a command. With user@ the subscription's
 * secret is sasl.password: a url never holds a password. A message with an order_key (an ordered
 * subscription) waits for the report of the one before it of that key, so
 * that no retry reorders a key.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "broker.h"
#include "log.h"
#include "netaddr.h"
#include "util.h"

/* After a producer could not be made, sends fail at once for this long. */
#define CREATE_RETRY_MS 1000
/* How long close() waits for reports of messages already sent. */
#define CLOSE_FLUSH_MS 2000

struct kafka_producer {
	struct kafka_producer *next;
	char *key;     /* servers, user, properties, secret, timeout: memory only, never printed */
	char *servers; /* for errors: the bootstrap list */
	rd_kafka_t *rk;
	int64_t retry_at_ms;
	int unfinished;                    /* sends not reported yet */
	bool vetted;                       /* its bootstrap hosts passed block_private_networks */
	atomic_bool block;                 /* relay.block_private_networks, for on_connect */
	atomic_bool refused;               /* on_connect refused an address */
	char last_error[TRANSPORT_ERRLEN]; /* the last producer-level error (error_cb), or why
	                                      creating failed */
};

enum kafka_state { KSEND_HELD, KSEND_SENT, KSEND_DONE };

struct kafka_send {
	struct kafka_send *prev, *next; /* the transport's list, in send order */
	struct kafka_send *successor;   /* held behind this one: same key, ordered */
	struct kafka_send *predecessor;
	struct kafka_producer *producer;
	char id[40];
	char *order_key;              /* the message's order_key, else NULL; owned */
	char *topic, *key, *body;     /* owned */
	rd_kafka_headers_t *headers;  /* owned until produced */
	struct transport_result *res; /* the caller's; NULL once cancelled */
	void *owner;
	enum kafka_state state;
	bool cancelled; /* dropped by cancel(): freed at close() */
};

struct kafka_transport {
	const struct relay_config *rc;
	bool blocking; /* relay.block_private_networks, as last configured */
	int event_fd;
	struct kafka_send *head, *tail;
	struct kafka_send *orphans; /* cancelled while produced: a report may still name them */
	struct kafka_producer *producers;
};

/* ---- librdkafka callbacks ---------------------------------------------------- */

static void ksend_finish(struct kafka_send *s, enum webhook_verdict v, const char *error);

/* Why a message was not stored, for delivery_attempts.error. */
static void describe_error(const struct kafka_send *s, rd_kafka_resp_err_t e, char *error,
                           size_t len)
{
	if (e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
		snprintf(error, len, "Kafka: topic %s does not exist (%s)", s->topic,
		         rd_kafka_err2str(e));
	else if (e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
		snprintf(error, len, "Kafka: not authorised to write to topic %s", s->topic);
	else if (e == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && atomic_load(&s->producer->refused))
		snprintf(error, len,
		         "Kafka: %s: refused: a broker's address is loopback, private or "
		         "link-local (relay.block_private_networks)",
		         rd_kafka_err2str(e));
	else if (e == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && s->producer->last_error[0])
		snprintf(error, len, "Kafka: %s (last error: %.300s)", rd_kafka_err2str(e),
		         s->producer->last_error);
	else
		snprintf(error, len, "Kafka: %s", rd_kafka_err2str(e));
}

/* A delivery report, on the relay's thread (rd_kafka_poll in progress()). */
static void on_delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct kafka_send *s = m->_private;
	char error[TRANSPORT_ERRLEN];

	(void)rk;
	(void)opaque;
	s->producer->unfinished--;
	if (s->cancelled)
		return;
	if (!m->err) {
		ksend_finish(s, WEBHOOK_DELIVERED, NULL);
		return;
	}
	describe_error(s, m->err, error, sizeof(error));
	ksend_finish(s, WEBHOOK_RETRY, error);
}

/* A producer-level error (brokers down, authentication), from rd_kafka_poll. */
static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct kafka_producer *p = opaque;

	(void)rk;
	(void)err;
	snprintf(p->last_error, sizeof(p->last_error), "%s", reason);
}

/* Every connection librdkafka opens, to the bootstrap servers and to the
 * brokers they name, on its threads: with relay.block_private_networks
 * on, a refused address is not connected to (as curl's for a webhook). */
static int on_connect(int fd, const struct sockaddr *addr, int addrlen, const char *id,
                      void *opaque)
{
	struct kafka_producer *p = opaque;

	(void)id;
	if (atomic_load(&p->block) && netaddr_blocked(addr)) {
		atomic_store(&p->refused, true);
		return ECONNREFUSED;
	}
	/* the socket is non-blocking: librdkafka waits for it */
	if (connect(fd, addr, (socklen_t)addrlen) == -1 && errno != EINPROGRESS)
		return errno;
	return 0;
}

/* librdkafka's own log lines (its threads), as warnings. */
static void on_library_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level; /* a broker that is down is the deliveries' retries, not an error */
	log_kv(LOG_WARNING, "relay: librdkafka", "facility", fac, "message", buf, NULL);
}

/* ---- producers ----------------------------------------------------------------- */

static char *producer_key(const struct broker_url *u, const char *secret, long timeout_ms)
{
	char *key = NULL, *next;

	if (asprintf(&key, "%s|%s|%s|%ld", u->user ? u->user : "", u->hosts, secret, timeout_ms) <
	    0)
		return NULL;
	for (int i = 0; i < u->nparams; i++) {
		if (!strchr(u->keys[i], '.'))
			continue;
		if (asprintf(&next, "%s|%s=%s", key, u->keys[i], u->values[i]) < 0) {
			free(key);
			return NULL;
		}
		free(key);
		key = next;
	}
	return key;
}

static bool conf_put(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                     size_t errlen)
{
	char why[256];

	if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
		return true;
	/* librdkafka's message may quote the value: name the property only */
	snprintf(err, errlen, "Kafka property %s: not accepted by librdkafka", name);
	return false;
}

/* librdkafka's configuration for `u`; NULL with why in `err`. */
static rd_kafka_conf_t *producer_conf(struct kafka_transport *tp, struct kafka_producer *p,
                                      const struct broker_url *u, const char *secret,
                                      long timeout_ms, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char num[32];
	bool has_protocol = broker_url_param(u, "security.protocol") != NULL;
	bool has_ca = broker_url_param(u, "ssl.ca.location") != NULL;

	snprintf(num, sizeof(num), "%ld", timeout_ms);
	if (!conf_put(conf, "bootstrap.servers", u->hosts, err, errlen) ||
	    !conf_put(conf, "client.id", "pgeventd", err, errlen) ||
	    !conf_put(conf, "enable.idempotence", "true", err, errlen) ||
	    !conf_put(conf, "message.timeout.ms", num, err, errlen) ||
	    !conf_put(conf, "linger.ms", "2", err, errlen))
		goto fail;
	snprintf(num, sizeof(num), "%d", tp->rc->connect_timeout_ms);
	if (!conf_put(conf, "socket.connection.setup.timeout.ms", num, err, errlen))
		goto fail;
	if (u->user &&
	    (!conf_put(conf, "sasl.username", u->user, err, errlen) ||
	     !conf_put(conf, "sasl.password", secret, err, errlen) ||
	     (!has_protocol && !conf_put(conf, "security.protocol", "SASL_SSL", err, errlen)) ||
	     (!broker_url_param(u, "sasl.mechanisms") &&
	      !conf_put(conf, "sasl.mechanisms", "PLAIN", err, errlen))))
		goto fail;
	for (int i = 0; i < u->nparams; i++) {
		if (!strchr(u->keys[i], '.'))
			continue;
		if (!broker_kafka_property_allowed(u->keys[i])) {
			/* kafka_send refused it already: never passed through */
			snprintf(err, errlen, "Kafka property %.100s is not one a url may set",
			         u->keys[i]);
			goto fail;
		}
		if (!conf_put(conf, u->keys[i], u->values[i], err, errlen))
			goto fail;
	}
	const char *proto = broker_url_param(u, "security.protocol");

	if (!has_ca && tp->rc->ca_file && tp->rc->ca_file[0] &&
	    ((proto && strcasestr(proto, "ssl")) || (!proto && u->user)) &&
	    !conf_put(conf, "ssl.ca.location", tp->rc->ca_file, err, errlen))
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery_report);
	rd_kafka_conf_set_error_cb(conf, on_producer_error);
	rd_kafka_conf_set_log_cb(conf, on_library_log);
	rd_kafka_conf_set_connect_cb(conf, on_connect);
	rd_kafka_conf_set_opaque(conf, p);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

static struct kafka_producer *producer_find(struct kafka_transport *tp, const struct broker_url *u,
                                            const char *secret, long timeout_ms, char *err,
                                            size_t errlen)
{
	char *key = producer_key(u, secret, timeout_ms);
	struct kafka_producer *p;

	if (!key) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (p = tp->producers; p; p = p->next)
		if (strcmp(p->key, key) == 0) {
			free(key);
			return p;
		}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->servers = util_strdup(u->hosts))) {
		free(p);
		free(key);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->key = key;
	p->next = tp->producers;
	tp->producers = p;
	return p;
}

/* Make the producer's rd_kafka_t unless it has one (a producer that hit a
 * fatal error is made again once nothing of it is unreported). */
static bool producer_ready(struct kafka_transport *tp, struct kafka_producer *p,
                           const struct broker_url *u, const char *secret, long timeout_ms,
                           char *err, size_t errlen)
{
	static const uint64_t one = 1;
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *q;
	char why[256];

	if (p->rk && rd_kafka_fatal_error(p->rk, why, sizeof(why))) {
		if (p->unfinished > 0) {
			snprintf(err, errlen, "Kafka producer for %s failed: %s", p->servers, why);
			return false;
		}
		rd_kafka_destroy(p->rk);
		p->rk = NULL;
	}
	if (p->rk)
		return true;
	if (util_mono_ms() < p->retry_at_ms) {
		snprintf(err, errlen, "%s", p->last_error);
		return false;
	}
	conf = producer_conf(tp, p, u, secret, timeout_ms, p->last_error, sizeof(p->last_error));
	if (conf && !(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)))) {
		snprintf(p->last_error, sizeof(p->last_error), "cannot make a Kafka producer: %s",
		         why);
		rd_kafka_conf_destroy(conf);
	}
	if (!p->rk) {
		p->retry_at_ms = util_mono_ms() + CREATE_RETRY_MS;
		snprintf(err, errlen, "%s", p->last_error);
		return false;
	}
	p->last_error[0] = '\0';
	q = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(q, tp->event_fd, &one, sizeof(one));
	rd_kafka_queue_destroy(q);
	return true;
}

/* ---- sends -------------------------------------------------------------------- */

static void ksend_unlink(struct kafka_transport *tp, struct kafka_send *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		tp->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		tp->tail = s->prev;
	s->prev = s->next = NULL;
}

static void ksend_free(struct kafka_send *s)
{
	if (s->headers)
		rd_kafka_headers_destroy(s->headers);
	free(s->order_key);
	free(s->topic);
	free(s->key);
	free(s->body);
	free(s);
}

static void ksend_produce(struct kafka_send *s)
{
	rd_kafka_resp_err_t e;

	s->state = KSEND_SENT;
	e = rd_kafka_producev(s->producer->rk, RD_KAFKA_V_TOPIC(s->topic),
	                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	                      RD_KAFKA_V_VALUE(s->body, strlen(s->body)),
	                      RD_KAFKA_V_KEY(s->key, s->key ? strlen(s->key) : 0),
	                      RD_KAFKA_V_HEADERS(s->headers), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
	if (e) {
		char error[TRANSPORT_ERRLEN];

		describe_error(s, e, error, sizeof(error));
		ksend_finish(s, WEBHOOK_RETRY, error);
		return;
	}
	s->headers = NULL; /* librdkafka's now */
	s->producer->unfinished++;
}

/* The outcome of `s`; what was held behind it goes on or fails with it. */
static void ksend_finish(struct kafka_send *s, enum webhook_verdict v, const char *error)
{
	struct kafka_send *next = s->successor;

	s->state = KSEND_DONE;
	s->res->verdict = v;
	s->res->status = 0;
	s->res->retry_after_ms = -1;
	snprintf(s->res->error, sizeof(s->res->error), "%s", error ? error : "");
	s->successor = NULL;
	if (!next)
		return;
	next->predecessor = NULL;
	if (v == WEBHOOK_DELIVERED) {
		ksend_produce(next);
	} else {
		char why[TRANSPORT_ERRLEN];

		snprintf(why, sizeof(why),
		         "not produced: delivery %s of the same key before it was not acknowledged",
		         s->id);
		ksend_finish(next, WEBHOOK_RETRY, why);
	}
}

static bool add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
	return !value[0] ||
	       rd_kafka_header_add(h, name, -1, value, -1) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* The producer's ordering_key in a message's order_key ("<subscription>
 * k:<ordering_key>", see transport.h), or NULL: an event ordered by its
 * aggregate, or an unordered message. An ordered subscription's messages
 * are keyed by it (without key=), so that a key's messages share a
 * partition and keep the relay's order there. */
static const char *explicit_ordering_key(const char *order_key)
{
	const char *sp = order_key ? strchr(order_key, ' ') : NULL;

	return sp && strncmp(sp + 1, "k:", 2) == 0 ? sp + 3 : NULL;
}

/* Topic, key, value and headers (CloudEvents' Kafka binding names: ce_*). */
static bool build_record(struct kafka_send *s, const struct transport_message *m,
                         const struct broker_url *u, const struct broker_event *ev, char *err,
                         size_t errlen)
{
	const char *key_tmpl = broker_url_param(u, "key"), *source = broker_url_param(u, "source");
	const char *ordering_key;
	json_t *extra;
	const char *k;
	json_t *v;

	s->topic = broker_expand(u->path, ev, false, err, errlen);
	if (!s->topic)
		return false;
	if (!s->topic[0] || strspn(s->topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                                     "0123456789._-") != strlen(s->topic)) {
		snprintf(err, errlen, "the topic template %s gives %s, not a Kafka topic name",
		         u->path, s->topic);
		return false;
	}
	if (key_tmpl) {
		s->key = broker_expand(key_tmpl, ev, false, err, errlen);
		if (!s->key)
			return false;
	} else if ((ordering_key = explicit_ordering_key(m->order_key))) {
		s->key = util_strdup(ordering_key);
	} else {
		s->key = broker_event_key(ev);
	}
	if (s->key && !s->key[0]) { /* no aggregate: no key, any partition */
		free(s->key);
		s->key = NULL;
	}
	if (!(s->body = util_strdup(m->body)) || !(s->headers = rd_kafka_headers_new(10))) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!add_header(s->headers, "ce_specversion", "1.0") ||
	    !add_header(s->headers, "ce_id", ev->id) ||
	    !add_header(s->headers, "ce_type", ev->type) ||
	    !add_header(s->headers, "ce_source", source && source[0] ? source : "pgeventd") ||
	    !add_header(s->headers, "ce_time", ev->time) ||
	    !add_header(s->headers, "ce_aggregatetype", ev->aggregate_type) ||
	    !add_header(s->headers, "ce_aggregateid", ev->aggregate_id) ||
	    !add_header(s->headers, "content-type", "application/json") ||
	    !add_header(s->headers, "pgeventd-delivery-id", m->id)) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	extra = json_loads(m->headers, 0, NULL);
	json_object_foreach(extra, k, v)
	{
		if (!json_is_string(v) || !add_header(s->headers, k, json_string_value(v))) {
			snprintf(err, errlen, "bad extra header %s", k);
			json_decref(extra);
			return false;
		}
	}
	json_decref(extra);
	return true;
}

/* Whether relay.block_private_networks refuses the bootstrap servers:
 * resolved once per producer while the option is on; on_connect checks
 * every address librdkafka connects to after that. */
static bool blocked(struct kafka_transport *tp, struct kafka_producer *p,
                    const struct broker_url *u, char *err, size_t errlen)
{
	atomic_store(&p->block, tp->rc->block_private_networks);
	if (!tp->rc->block_private_networks || p->vetted)
		return false;
	if (broker_hosts_blocked(u->hosts, "9092", err, errlen))
		return true;
	p->vetted = true;
	return false;
}

static struct kafka_send *last_of_key(struct kafka_transport *tp, const char *key)
{
	for (struct kafka_send *s = tp->tail; s; s = s->prev)
		if (s->order_key && strcmp(s->order_key, key) == 0)
			return s;
	return NULL;
}

static void *kafka_send(void *arg, const struct transport_message *m, struct transport_result *res,
                        void *owner, char *err, size_t errlen)
{
	struct kafka_transport *tp = arg;
	struct broker_url u;
	struct broker_event ev = { 0 };
	struct kafka_send *s = NULL, *before;
	const char *order;
	char perr[TRANSPORT_ERRLEN];

	if (!broker_url_parse(m->target, &u, err, errlen))
		return NULL;
	/* an allowlist: other properties load code, run commands or hold
	 * secrets; a url with one is unsendable */
	if (!broker_kafka_properties_ok(&u, err, errlen))
		goto fail;
	if (!broker_event_parse(m->body, &ev, err, errlen))
		goto fail;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(s->id, sizeof(s->id), "%s", m->id);
	s->res = res;
	s->owner = owner;
	if (!build_record(s, m, &u, &ev, err, errlen))
		goto fail;
	order = m->order_key && m->order_key[0] ? m->order_key : NULL;
	if (order && !(s->order_key = util_strdup(order))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->producer = producer_find(tp, &u, m->secret, m->timeout_ms, err, errlen);
	if (!s->producer)
		goto fail;
	before = s->order_key ? last_of_key(tp, s->order_key) : NULL;
	s->prev = tp->tail;
	if (tp->tail)
		tp->tail->next = s;
	else
		tp->head = s;
	tp->tail = s;
	if (blocked(tp, s->producer, &u, perr, sizeof(perr))) {
		ksend_finish(s, WEBHOOK_FAIL, perr); /* as a webhook's: nothing is produced */
	} else if (!producer_ready(tp, s->producer, &u, m->secret, m->timeout_ms, perr,
	                           sizeof(perr))) {
		ksend_finish(s, WEBHOOK_RETRY, perr);
	} else if (before && before->state != KSEND_DONE) {
		s->state = KSEND_HELD;
		s->predecessor = before;
		before->successor = s;
	} else if (before && before->res->verdict != WEBHOOK_DELIVERED) {
		snprintf(perr, sizeof(perr),
		         "not produced: delivery %s of the same key before it was not acknowledged",
		         before->id);
		ksend_finish(s, WEBHOOK_RETRY, perr);
	} else {
		ksend_produce(s);
	}
	broker_event_release(&ev);
	broker_url_release(&u);
	return s;
fail:
	if (s)
		ksend_free(s);
	broker_event_release(&ev);
	broker_url_release(&u);
	return NULL;
}

/* ---- progress, wait ------------------------------------------------------------- */

static void kafka_progress(void *arg, transport_done_fn *done, void *done_arg)
{
	struct kafka_transport *tp = arg;
	struct kafka_send *s, *next;
	uint64_t n;

	if (read(tp->event_fd, &n, sizeof(n)) < 0) {
		/* nothing queued since the last read */
	}
	/* Serve every queued report and error: the fd is written only when
	 * the queue was empty. */
	for (struct kafka_producer *p = tp->producers; p; p = p->next)
		while (p->rk && rd_kafka_poll(p->rk, 0) > 0)
			;
	for (s = tp->head; s; s = next) {
		next = s->next;
		if (s->state != KSEND_DONE)
			continue;
		ksend_unlink(tp, s);
		done(done_arg, s->owner);
		ksend_free(s);
	}
}

static void kafka_cancel(void *arg, void *handle)
{
	struct kafka_transport *tp = arg;
	struct kafka_send *s = handle;

	if (s->predecessor)
		s->predecessor->successor = NULL;
	if (s->successor) {
		s->successor->predecessor = NULL;
		if (s->successor->state == KSEND_HELD)
			ksend_produce(s->successor);
	}
	ksend_unlink(tp, s);
	if (s->state != KSEND_SENT) {
		ksend_free(s);
		return;
	}
	/* librdkafka still holds it as its opaque: freed at close() */
	s->cancelled = true;
	s->next = tp->orphans;
	tp->orphans = s;
}

static unsigned kafka_waitfds(void *arg, struct transport_waitfd *fds, unsigned max)
{
	struct kafka_transport *tp = arg;

	if (max == 0)
		return 0;
	fds[0] = (struct transport_waitfd){ tp->event_fd, POLLIN, 0 };
	return 1;
}

static void kafka_wait(void *arg, struct transport_waitfd *fds, unsigned nfds, int timeout_ms)
{
	struct kafka_transport *tp = arg;
	struct pollfd pfds[nfds + 1];

	for (unsigned i = 0; i < nfds; i++)
		pfds[i] = (struct pollfd){ fds[i].fd, fds[i].events, 0 };
	pfds[nfds] = (struct pollfd){ tp->event_fd, POLLIN, 0 };
	if (poll(pfds, nfds + 1, timeout_ms) < 0)
		return;
	for (unsigned i = 0; i < nfds; i++)
		fds[i].revents = pfds[i].revents;
}

/* ---- the transport ------------------------------------------------------------- */

static bool kafka_serves(const char *target)
{
	return strncasecmp(target, "kafka://", 8) == 0;
}

static void kafka_configure(void *arg, const struct relay_config *rc)
{
	struct kafka_transport *tp = arg;

	for (struct kafka_producer *p = tp->producers; p; p = p->next) {
		/* turned on: vetted again at the next send */
		if (rc->block_private_networks && !tp->blocking)
			p->vetted = false;
		atomic_store(&p->block, rc->block_private_networks);
		if (!rc->block_private_networks)
			atomic_store(&p->refused, false);
	}
	tp->blocking = rc->block_private_networks;
	tp->rc = rc;
}

static void *kafka_open(const struct relay_config *rc, int slots)
{
	struct kafka_transport *tp = calloc(1, sizeof(*tp));

	(void)slots;
	if (!tp)
		return NULL;
	tp->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (tp->event_fd < 0) {
		free(tp);
		return NULL;
	}
	tp->rc = rc;
	tp->blocking = rc->block_private_networks;
	return tp;
}

static void kafka_close(void *arg)
{
	struct kafka_transport *tp = arg;
	struct kafka_producer *p, *pn;
	struct kafka_send *s, *sn;

	if (!tp)
		return;
	/* What is still queued is dropped; reports of the rest come or not. */
	for (p = tp->producers; p; p = p->next) {
		if (!p->rk)
			continue;
		for (s = tp->head; s; s = s->next)
			s->cancelled = true;
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE);
		rd_kafka_flush(p->rk, CLOSE_FLUSH_MS);
	}
	for (p = tp->producers; p; p = pn) {
		pn = p->next;
		if (p->rk)
			rd_kafka_destroy(p->rk);
		free(p->key);
		free(p->servers);
		free(p);
	}
	for (s = tp->head; s; s = sn) {
		sn = s->next;
		ksend_free(s);
	}
	for (s = tp->orphans; s; s = sn) {
		sn = s->next;
		ksend_free(s);
	}
	close(tp->event_fd);
	free(tp);
}

const struct transport_ops transport_kafka = {
	.name = "kafka",
	.serves = kafka_serves,
	.open = kafka_open,
	.close = kafka_close,
	.configure = kafka_configure,
	.send = kafka_send,
	.cancel = kafka_cancel,
	.progress = kafka_progress,
	.wait = kafka_wait,
	.waitfds = kafka_waitfds,
};
