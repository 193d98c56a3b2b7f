/*
 * transport_nats.c -- the relay's NATS JetStream transport: asynchronous
 * publishes with acknowledgements (libnats).
 *
 * A delivery counts as delivered only on the stream's PubAck. Its id is the
 * message's Nats-Msg-Id, so the copy a retry publishes after a lost ack is
 * dropped by the stream's duplicate window. libnats runs its callbacks on
 * its own threads: the ack handler only queues what it learnt and writes an
 * eventfd, which the relay's wait watches (waitfds); progress(), on the
 * relay's thread, matches acks to sends by that id. A connection is made
 * on a thread of its own (struct nats_connect): its sends wait for it, up
 * to their timeout, and no other subscription waits at all.
 *
 * Target: nats://[user@]host[:port][,host:port...]/<subject template>[?query]
 * (tls://... for TLS). A message with an order_key (an ordered subscription)
 * waits for the ack of the one before it of that key. The query takes source= (ce-source),
 * auth=token, creds=<file>, nkey=<public key>&seed=<file>, ca=<file>, cert=<file>&key=<file>. The
 * password (user@) or token is the subscription's secret.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "transport.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "broker.h"
#include "util.h"

/* After a failed connect, sends fail at once for this long. */
#define CONNECT_RETRY_MS 1000
/* At close, how long a connect under way may take to end before it is
 * left to its thread. */
#define ABANDON_WAIT_MS 500
/* The least a publish that waited for its connection waits for its ack. */
#define ACK_FLOOR_MS 1000
/* libnats's own bound on unacknowledged publishes: the relay's slots are
 * the real one. */
#define MAX_PENDING 65536
/* libnats times out an unacknowledged publish after its MaxWait; past this
 * much more, the transport does (a connection dropped with its timers). */
#define ACK_GRACE_MS 2000

/*
 * A connect in progress, on a thread of its own: natsConnection_Connect
 * blocks for up to connect_timeout_ms per server, and a silent or
 * black-holed server must not hold the relay's loop (every other
 * subscription's sends) for that long. The thread only connects; it hands
 * the connection back under `lock` and writes the sink's event fd. Whoever
 * comes last frees the job: the relay's thread once it is done, or the
 * connect thread when the transport closed meanwhile (`abandoned`).
 */
struct nats_connect {
	pthread_mutex_t lock;
	natsOptions *opts; /* the thread's, destroyed by it */
	natsConnection *nc;
	natsStatus status;
	int event_fd;
	bool done, abandoned;
};

/* One connection (and JetStream context) per server and credentials. */
struct nats_conn {
	struct nats_conn *next;
	char *key;     /* servers, user, auth parameters and secret: memory only, never printed */
	char *servers; /* for errors: scheme://hosts, no credentials */
	natsConnection *nc;
	jsCtx *js;
	struct nats_connect *job; /* a connect under way, see above */
	pthread_t thread;         /* its thread, while job is set */
	int64_t retry_at_ms;      /* after a failed connect, monotonic */
	bool vetted;              /* its hosts passed relay.block_private_networks */
	bool stale; /* that option was turned on during the connect: its result is dropped */
	char last_error[256]; /* why the last connect failed */
};

/* PUB_CONNECTING: waiting for its connection's connect to end. */
enum pub_state { PUB_HELD, PUB_CONNECTING, PUB_SENT, PUB_DONE };

/* One send: from send() until progress() reports it or cancel() drops it. */
struct nats_pub {
	struct nats_pub *prev, *next; /* the transport's list, in send order */
	struct nats_pub *successor;   /* held behind this one: same key, ordered */
	struct nats_pub *predecessor; /* what this one is held behind */
	struct nats_conn *conn;
	natsMsg *msg; /* built; the library's once published */
	char id[40];
	char *key;                    /* the message's order_key, else NULL; owned */
	struct transport_result *res; /* the caller's */
	void *owner;
	long timeout_ms;
	int64_t deadline_ms; /* monotonic: past it, no ack (or no connection) is a retry */
	enum pub_state state;
};

/* What an ack callback learnt, handed to the relay's thread. */
struct nats_ack {
	struct nats_ack *next;
	char id[40];
	bool ok, duplicate;
	char error[TRANSPORT_ERRLEN];
};

/* Where the ack callbacks put what they learnt: the callbacks' closure. */
struct nats_sink {
	int event_fd;                     /* written by callbacks, read by progress() */
	pthread_mutex_t lock;             /* guards acks */
	struct nats_ack *acks;            /* newest first */
	struct nats_sink *lingering_next; /* see lingering_sinks */
};

struct nats_transport {
	const struct relay_config *rc;
	struct nats_sink *sink; /* owned, but see nats_close() */
	struct nats_pub *head, *tail;
	struct nats_conn *conns;
	bool blocking; /* relay.block_private_networks, as last configured */
	bool used;     /* libnats was opened */
	bool tls;      /* ... and set up OpenSSL for a connection */
};

/* The sinks left to libnats's threads, which run on until the process
 * ends when TLS was used, a connect was left to its thread, or closing
 * timed out (see nats_close()): reachable, never freed. */
static struct nats_sink *volatile lingering_sinks; /* volatile: a store never read is kept */
static pthread_mutex_t lingering_lock = PTHREAD_MUTEX_INITIALIZER;

static void sink_leave(struct nats_sink *sink)
{
	pthread_mutex_lock(&lingering_lock);
	sink->lingering_next = lingering_sinks;
	lingering_sinks = sink;
	pthread_mutex_unlock(&lingering_lock);
}

/* ---- callbacks (libnats's threads) ---------------------------------------- */

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct nats_sink *sink = closure;
	struct nats_ack *a = calloc(1, sizeof(*a));
	const char *id = NULL;
	uint64_t one = 1;

	(void)js;
	if (a && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
		snprintf(a->id, sizeof(a->id), "%s", id);
		a->ok = pa != NULL;
		a->duplicate = pa && pa->Duplicate;
		if (!pa && pae && pae->Err == NATS_TIMEOUT)
			snprintf(a->error, sizeof(a->error),
			         "no acknowledgement from the stream in time (is the server "
			         "reachable?)");
		else if (!pa && pae && pae->Err == NATS_NO_RESPONDERS)
			snprintf(a->error, sizeof(a->error),
			         "no stream takes subject %s (NATS: no responders)",
			         natsMsg_GetSubject(msg));
		else if (!pa && pae)
			snprintf(a->error, sizeof(a->error),
			         "JetStream refused the message: %s (error code %d)",
			         pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
			         (int)pae->ErrCode);
		else if (!pa)
			snprintf(a->error, sizeof(a->error), "no acknowledgement");
		pthread_mutex_lock(&sink->lock);
		a->next = sink->acks;
		sink->acks = a;
		pthread_mutex_unlock(&sink->lock);
		if (write(sink->event_fd, &one, sizeof(one)) < 0) {
			/* the counter is full: a wake-up is pending anyway */
		}
	} else {
		free(a);
	}
	natsMsg_Destroy(msg);
}

/* ---- connections ------------------------------------------------------------ */

static void conn_free(struct nats_conn *c)
{
	jsCtx_Destroy(c->js);
	natsConnection_Destroy(c->nc);
	free(c->key);
	free(c->servers);
	free(c);
}

static void conn_disconnect(struct nats_conn *c)
{
	jsCtx_Destroy(c->js);
	natsConnection_Destroy(c->nc);
	c->js = NULL;
	c->nc = NULL;
}

/* The key a connection is shared by: what it connects to and as whom. */
static char *conn_key(const struct broker_url *u, const char *secret)
{
	static const char *const auth_params[] = { "auth", "creds", "nkey", "seed",
		                                   "ca",   "cert",  "key",  "tls" };
	char *key = NULL, *next;

	if (asprintf(&key, "%s|%s|%s|%s", u->scheme, u->user ? u->user : "", u->hosts, secret) < 0)
		return NULL;
	for (size_t i = 0; i < sizeof(auth_params) / sizeof(auth_params[0]); i++) {
		const char *v = broker_url_param(u, auth_params[i]);

		if (asprintf(&next, "%s|%s", key, v ? v : "") < 0) {
			free(key);
			return NULL;
		}
		free(key);
		key = next;
	}
	return key;
}

/* Whether the files a url names (seed=, creds=, ca=, cert=, key=) can be
 * read; false with which one and why in `err`. libnats reads them only at
 * connect and then says just "Error". The path is in the url already, so
 * naming it tells nothing secret; the content is never quoted. */
static bool files_readable(const struct broker_url *u, char *err, size_t errlen)
{
	static const char *const params[] = { "seed", "creds", "ca", "cert", "key" };
	bool tls = strcmp(u->scheme, "tls") == 0 || broker_url_flag(u, "tls");

	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		const char *path = broker_url_param(u, params[i]);

		/* only what conn_options() reads: ca= without TLS, key= without
		 * cert=, or seed= beside creds= ... are ignored there */
		if ((strcmp(params[i], "ca") == 0 && !tls) ||
		    (strcmp(params[i], "key") == 0 && !broker_url_param(u, "cert")) ||
		    (strcmp(params[i], "seed") == 0 && !broker_url_param(u, "nkey") &&
		     !broker_url_param(u, "creds")))
			continue;
		if (path && access(path, R_OK) != 0) {
			snprintf(err, errlen, "cannot read %s=%s: %s", params[i], path,
			         strerror(errno));
			return false;
		}
	}
	if (broker_url_param(u, "nkey") && !broker_url_param(u, "seed") &&
	    !broker_url_param(u, "creds")) {
		snprintf(err, errlen, "nkey= needs seed=<file> (the file with the NKey's seed)");
		return false;
	}
	return true;
}

/* Options from the url (and the secret); false with why in `err`. */
static bool conn_options(struct nats_transport *tp, const struct broker_url *u, const char *secret,
                         natsOptions *o, char *err, size_t errlen)
{
	bool tls = strcmp(u->scheme, "tls") == 0 || broker_url_flag(u, "tls");
	const char *auth = broker_url_param(u, "auth"), *creds = broker_url_param(u, "creds"),
	           *nkey = broker_url_param(u, "nkey"), *seed = broker_url_param(u, "seed"),
	           *ca = broker_url_param(u, "ca"), *cert = broker_url_param(u, "cert"),
	           *key = broker_url_param(u, "key");
	const char *servers[16];
	char *copy = util_strdup(u->hosts), *save = NULL;
	char *urls[16] = { 0 };
	int n = 0;
	natsStatus s = NATS_OK;
	bool ok = false;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (char *h = strtok_r(copy, ",", &save); h && n < 16; h = strtok_r(NULL, ",", &save)) {
		if (asprintf(&urls[n], "%s://%s", tls ? "tls" : "nats", h) < 0)
			goto out;
		servers[n] = urls[n];
		n++;
	}
	s = natsOptions_SetServers(o, servers, n);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, "pgeventd relay");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, tp->rc->connect_timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1); /* forever: sends retry meanwhile */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	/* the servers a cluster announces were never vetted */
	if (s == NATS_OK && tp->rc->block_private_networks)
		s = natsOptions_SetIgnoreDiscoveredServers(o, true);
	if (s == NATS_OK && u->user)
		s = natsOptions_SetUserInfo(o, u->user, secret);
	if (s == NATS_OK && auth && strcmp(auth, "token") == 0)
		s = natsOptions_SetToken(o, secret);
	if (s == NATS_OK && creds)
		s = natsOptions_SetUserCredentialsFromFiles(o, creds, seed);
	if (s == NATS_OK && nkey && !creds)
		s = natsOptions_SetNKeyFromSeed(o, nkey, seed ? seed : "");
	if (s == NATS_OK && tls) {
		tp->tls = true; /* libnats sets up OpenSSL: see nats_close() */
		s = natsOptions_SetSecure(o, true);
	}
	if (s == NATS_OK && tls && (ca || (tp->rc->ca_file && tp->rc->ca_file[0])))
		s = natsOptions_LoadCATrustedCertificates(o, ca ? ca : tp->rc->ca_file);
	if (s == NATS_OK && cert)
		s = natsOptions_LoadCertificatesChain(o, cert, key ? key : cert);
	if (s != NATS_OK) {
		/* the status text only: libnats's detail may quote a file's content */
		snprintf(err, errlen, "NATS connection options: %s", natsStatus_GetText(s));
		goto out;
	}
	ok = true;
out:
	if (!ok && s == NATS_OK)
		snprintf(err, errlen, "out of memory");
	for (int i = 0; i < n; i++)
		free(urls[i]);
	free(copy);
	return ok;
}

/* The connection for `u`, made if need be; NULL with why in `err`. */
static struct nats_conn *conn_find(struct nats_transport *tp, const struct broker_url *u,
                                   const char *secret, char *err, size_t errlen)
{
	char *key = conn_key(u, secret);
	struct nats_conn *c;

	if (!key) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (c = tp->conns; c; c = c->next)
		if (strcmp(c->key, key) == 0) {
			free(key);
			return c;
		}
	c = calloc(1, sizeof(*c));
	if (!c || asprintf(&c->servers, "%s://%s", u->scheme, u->hosts) < 0) {
		free(c);
		free(key);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->key = key;
	c->next = tp->conns;
	tp->conns = c;
	return c;
}

static void *connect_thread(void *arg)
{
	struct nats_connect *job = arg;
	natsConnection *nc = NULL;
	natsStatus s = natsConnection_Connect(&nc, job->opts);
	uint64_t one = 1;

	natsOptions_Destroy(job->opts); /* the connection keeps a copy */
	job->opts = NULL;
	pthread_mutex_lock(&job->lock);
	if (job->abandoned) {
		pthread_mutex_unlock(&job->lock);
		natsConnection_Destroy(nc);
		pthread_mutex_destroy(&job->lock);
		free(job);
		return NULL;
	}
	job->nc = nc;
	job->status = s;
	job->done = true;
	if (write(job->event_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: a wake-up is pending anyway */
	}
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

enum conn_state { CONN_READY, CONN_PENDING, CONN_FAILED };

/* A failed connect: sends fail at once with its reason for a second. */
static enum conn_state conn_failed(struct nats_conn *c, char *err, size_t errlen)
{
	c->retry_at_ms = util_mono_ms() + CONNECT_RETRY_MS;
	snprintf(err, errlen, "%s", c->last_error);
	return CONN_FAILED;
}

/* Whether `c` is connected; if not, start connecting it in the background
 * (CONN_PENDING) unless a connect failed within the last second
 * (CONN_FAILED, with why in `err`: no credentials in it). */
static enum conn_state conn_ready(struct nats_transport *tp, struct nats_conn *c,
                                  const struct broker_url *u, const char *secret, char *err,
                                  size_t errlen)
{
	natsOptions *o = NULL;
	struct nats_connect *job;
	natsStatus s;

	if (c->nc && natsConnection_IsClosed(c->nc))
		conn_disconnect(c);
	if (c->nc)
		return CONN_READY;
	if (c->job)
		return CONN_PENDING;
	if (util_mono_ms() < c->retry_at_ms) {
		snprintf(err, errlen, "%s", c->last_error);
		return CONN_FAILED;
	}
	tp->used = true;
	s = natsOptions_Create(&o);
	if (s != NATS_OK) {
		snprintf(c->last_error, sizeof(c->last_error), "cannot set up libnats: %s",
		         natsStatus_GetText(s));
		return conn_failed(c, err, errlen);
	}
	if (!files_readable(u, c->last_error, sizeof(c->last_error)) ||
	    !conn_options(tp, u, secret, o, c->last_error, sizeof(c->last_error))) {
		natsOptions_Destroy(o);
		return conn_failed(c, err, errlen);
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		natsOptions_Destroy(o);
		snprintf(c->last_error, sizeof(c->last_error), "out of memory");
		return conn_failed(c, err, errlen);
	}
	pthread_mutex_init(&job->lock, NULL);
	job->opts = o;
	job->event_fd = tp->sink->event_fd;
	if (pthread_create(&c->thread, NULL, connect_thread, job) != 0) {
		natsOptions_Destroy(o);
		pthread_mutex_destroy(&job->lock);
		free(job);
		snprintf(c->last_error, sizeof(c->last_error),
		         "cannot start a thread to connect to %s", c->servers);
		return conn_failed(c, err, errlen);
	}
	c->job = job;
	return CONN_PENDING;
}

/* If `c`'s connect has ended, take its connection (and make its JetStream
 * context) or its failure; whether it ended. */
static bool conn_collect(struct nats_transport *tp, struct nats_conn *c)
{
	struct nats_connect *job = c->job;
	jsOptions jo;
	natsStatus s;
	bool done;

	if (!job)
		return false;
	pthread_mutex_lock(&job->lock);
	done = job->done;
	pthread_mutex_unlock(&job->lock);
	if (!done)
		return false;
	pthread_join(c->thread, NULL);
	c->job = NULL;
	c->nc = job->nc;
	s = job->status;
	pthread_mutex_destroy(&job->lock);
	free(job);
	if (s == NATS_OK && c->stale) {
		/* vetted again at the next send, and connected again if allowed */
		snprintf(c->last_error, sizeof(c->last_error),
		         "relay.block_private_networks was turned on while connecting to %s",
		         c->servers);
		c->stale = false;
		natsConnection_Destroy(c->nc);
		c->nc = NULL;
		return true;
	}
	c->stale = false;
	if (s != NATS_OK) {
		snprintf(c->last_error, sizeof(c->last_error), "cannot connect to %s: %s%s",
		         c->servers, natsStatus_GetText(s),
		         s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED
		             ? " (check the user, token, NKey or creds file)"
		             : "");
		natsConnection_Destroy(c->nc);
		c->nc = NULL;
		c->retry_at_ms = util_mono_ms() + CONNECT_RETRY_MS;
		return true;
	}
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = MAX_PENDING;
	jo.PublishAsync.AckHandler = on_pub_ack;
	jo.PublishAsync.AckHandlerClosure = tp->sink;
	s = natsConnection_JetStream(&c->js, c->nc, &jo);
	if (s != NATS_OK) {
		snprintf(c->last_error, sizeof(c->last_error), "no JetStream context on %s: %s",
		         c->servers, natsStatus_GetText(s));
		natsConnection_Destroy(c->nc);
		c->nc = NULL;
		c->retry_at_ms = util_mono_ms() + CONNECT_RETRY_MS;
	}
	return true;
}

/* At close: a connect still under way is given until `deadline_ms`
 * (monotonic, shared by all connections) to end on its own: a thread left
 * in a TLS handshake while the process exits would race OpenSSL's cleanup
 * at exit. Past it, it is left to its thread, which frees what it made
 * when it ends; whether one was. */
static bool conn_abandon(struct nats_conn *c, int64_t deadline_ms)
{
	struct nats_connect *job = c->job;

	if (!job)
		return false;
	c->job = NULL;
	for (;;) {
		bool done;

		pthread_mutex_lock(&job->lock);
		done = job->done;
		pthread_mutex_unlock(&job->lock);
		if (done || util_mono_ms() >= deadline_ms)
			break;
		usleep(10 * 1000);
	}
	pthread_mutex_lock(&job->lock);
	if (!job->done) {
		job->abandoned = true;
		pthread_mutex_unlock(&job->lock);
		pthread_detach(c->thread);
		return true;
	}
	pthread_mutex_unlock(&job->lock);
	pthread_join(c->thread, NULL);
	natsConnection_Destroy(job->nc);
	pthread_mutex_destroy(&job->lock);
	free(job);
	return false;
}

/* ---- sends -------------------------------------------------------------------- */

static void pub_unlink(struct nats_transport *tp, struct nats_pub *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		tp->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		tp->tail = p->prev;
	p->prev = p->next = NULL;
}

static void pub_free(struct nats_pub *p)
{
	natsMsg_Destroy(p->msg);
	free(p->key);
	free(p);
}

static void pub_finish(struct nats_pub *p, enum webhook_verdict v, const char *error);

/* Publish a built message; on a refusal the send ends as a retry. One
 * whose connection is still connecting waits for it, up to its timeout. */
static void pub_publish(struct nats_pub *p)
{
	jsPubOptions po;
	natsStatus s;

	long wait_ms = p->timeout_ms;
	int64_t now = util_mono_ms();

	if (!p->conn->js) {
		if (p->conn->job) {
			p->state = PUB_CONNECTING;
			p->deadline_ms = now + p->timeout_ms;
		} else {
			pub_finish(p, WEBHOOK_RETRY, p->conn->last_error);
		}
		return;
	}
	/* the attempt's timeout covers the wait for the connection too: its
	 * lease was taken for one timeout */
	if (p->state == PUB_CONNECTING) {
		wait_ms = (long)(p->deadline_ms - now);
		if (wait_ms <= 0) {
			char error[TRANSPORT_ERRLEN];

			snprintf(error, sizeof(error),
			         "not connected to %s within %ld ms (still connecting)",
			         p->conn->servers, p->timeout_ms);
			pub_finish(p, WEBHOOK_RETRY, error);
			return;
		}
		/* a connect that ended just in time still leaves the ack a
		 * moment (the lease has connect_timeout_ms to spare) */
		if (wait_ms < ACK_FLOOR_MS)
			wait_ms = p->timeout_ms < ACK_FLOOR_MS ? p->timeout_ms : ACK_FLOOR_MS;
	}
	jsPubOptions_Init(&po);
	po.MaxWait = wait_ms;
	p->state = PUB_SENT;
	p->deadline_ms = now + wait_ms + ACK_GRACE_MS;
	s = js_PublishMsgAsync(p->conn->js, &p->msg, &po);
	if (s != NATS_OK) {
		char error[TRANSPORT_ERRLEN];

		snprintf(error, sizeof(error), "cannot publish to %s: %s", p->conn->servers,
		         natsStatus_GetText(s));
		pub_finish(p, WEBHOOK_RETRY, error);
	}
}

/* The outcome of `p`; what was held behind it goes on or fails with it,
 * so no message of its key overtakes it. */
static void pub_finish(struct nats_pub *p, enum webhook_verdict v, const char *error)
{
	struct nats_pub *next = p->successor;

	p->state = PUB_DONE;
	p->res->verdict = v;
	p->res->status = 0;
	p->res->retry_after_ms = -1;
	snprintf(p->res->error, sizeof(p->res->error), "%s", error ? error : "");
	p->successor = NULL;
	if (!next)
		return;
	next->predecessor = NULL;
	if (v == WEBHOOK_DELIVERED) {
		pub_publish(next);
	} else {
		char why[TRANSPORT_ERRLEN];

		snprintf(
		    why, sizeof(why),
		    "not published: delivery %s of the same key before it was not acknowledged",
		    p->id);
		pub_finish(next, WEBHOOK_RETRY, why);
	}
}

static bool set_header(natsMsg *m, const char *name, const char *value)
{
	return !value[0] || natsMsgHeader_Set(m, name, value) == NATS_OK;
}

/* The message: the body as it is, CloudEvents binary-mode headers, the
 * subscription's extra headers, and Nats-Msg-Id for the stream's dedupe. */
static natsMsg *build_message(const struct transport_message *m, const struct broker_url *u,
                              const struct broker_event *ev, char *err, size_t errlen)
{
	const char *source = broker_url_param(u, "source");
	char *subject = broker_expand(u->path, ev, true, err, errlen);
	natsMsg *msg = NULL;
	json_t *extra = NULL, *v;
	const char *k;

	if (!subject)
		return NULL;
	if (!subject[0] || subject[0] == '.' || subject[strlen(subject) - 1] == '.' ||
	    strstr(subject, "..")) {
		/* the template's own dots: the values' cannot make an empty token */
		snprintf(err, errlen, "the subject template %s gives no valid subject (%s)",
		         u->path, subject);
		goto fail;
	}
	if (natsMsg_Create(&msg, subject, NULL, m->body, (int)strlen(m->body)) != NATS_OK) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!set_header(msg, "Nats-Msg-Id", m->id) || !set_header(msg, "ce-specversion", "1.0") ||
	    !set_header(msg, "ce-id", ev->id) || !set_header(msg, "ce-type", ev->type) ||
	    !set_header(msg, "ce-source", source && source[0] ? source : "pgeventd") ||
	    !set_header(msg, "ce-time", ev->time) ||
	    !set_header(msg, "ce-aggregatetype", ev->aggregate_type) ||
	    !set_header(msg, "ce-aggregateid", ev->aggregate_id) ||
	    !set_header(msg, "content-type", "application/json")) {
		snprintf(err, errlen, "bad header value, or out of memory");
		goto fail;
	}
	extra = json_loads(m->headers, 0, NULL);
	json_object_foreach(extra, k, v)
	{
		if (!json_is_string(v) || strpbrk(k, "\r\n: ") ||
		    strpbrk(json_string_value(v), "\r\n") ||
		    natsMsgHeader_Set(msg, k, json_string_value(v)) != NATS_OK) {
			snprintf(err, errlen, "bad extra header %s", k);
			goto fail;
		}
	}
	json_decref(extra);
	free(subject);
	return msg;
fail:
	json_decref(extra);
	natsMsg_Destroy(msg);
	free(subject);
	return NULL;
}

/* Whether relay.block_private_networks refuses the connection's servers:
 * resolved once per connection while the option is on (libnats resolves
 * again when it connects: see broker_hosts_blocked). */
static bool blocked(struct nats_transport *tp, struct nats_conn *c, const struct broker_url *u,
                    char *err, size_t errlen)
{
	if (!tp->rc->block_private_networks || c->vetted)
		return false;
	if (broker_hosts_blocked(u->hosts, "4222", err, errlen))
		return true;
	c->vetted = true;
	return false;
}

/* The unfinished send of `key` that came last, or NULL. */
static struct nats_pub *last_of_key(struct nats_transport *tp, const char *key)
{
	for (struct nats_pub *p = tp->tail; p; p = p->prev)
		if (p->key && strcmp(p->key, key) == 0)
			return p;
	return NULL;
}

static void *nats_send(void *arg, const struct transport_message *m, struct transport_result *res,
                       void *owner, char *err, size_t errlen)
{
	struct nats_transport *tp = arg;
	struct broker_url u;
	struct broker_event ev = { 0 };
	struct nats_pub *p = NULL, *before;
	char cerr[TRANSPORT_ERRLEN];

	if (!broker_url_parse(m->target, &u, err, errlen))
		return NULL;
	/* before any natsMsg: destroying one needs the library open */
	if (!tp->used) {
		natsStatus ns = nats_Open(-1);

		if (ns != NATS_OK) {
			snprintf(err, errlen, "cannot set up libnats: %s", natsStatus_GetText(ns));
			goto fail;
		}
		tp->used = true;
	}
	if (!broker_event_parse(m->body, &ev, err, errlen))
		goto fail;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(p->id, sizeof(p->id), "%s", m->id);
	p->res = res;
	p->owner = owner;
	p->timeout_ms = m->timeout_ms;
	p->msg = build_message(m, &u, &ev, err, errlen);
	if (!p->msg)
		goto fail;
	if (m->order_key && m->order_key[0] && !(p->key = util_strdup(m->order_key))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	p->conn = conn_find(tp, &u, m->secret, err, errlen);
	if (!p->conn)
		goto fail;
	before = p->key ? last_of_key(tp, p->key) : NULL;
	p->prev = tp->tail;
	if (tp->tail)
		tp->tail->next = p;
	else
		tp->head = p;
	tp->tail = p;
	if (blocked(tp, p->conn, &u, cerr, sizeof(cerr))) {
		pub_finish(p, WEBHOOK_FAIL, cerr); /* as a webhook's: nothing is published */
	} else if (conn_ready(tp, p->conn, &u, m->secret, cerr, sizeof(cerr)) == CONN_FAILED) {
		pub_finish(p, WEBHOOK_RETRY, cerr);
	} else if (before && before->state != PUB_DONE) {
		p->state = PUB_HELD; /* published when `before` is acknowledged */
		p->predecessor = before;
		before->successor = p;
	} else if (before && before->res->verdict != WEBHOOK_DELIVERED) {
		snprintf(cerr, sizeof(cerr),
		         "not published: delivery %s of the same key before it was not "
		         "acknowledged",
		         before->id);
		pub_finish(p, WEBHOOK_RETRY, cerr);
	} else {
		pub_publish(p);
	}
	broker_event_release(&ev);
	broker_url_release(&u);
	return p;
fail:
	if (p)
		pub_free(p);
	broker_event_release(&ev);
	broker_url_release(&u);
	return NULL;
}

/* ---- progress, wait ------------------------------------------------------------- */

static void apply_acks(struct nats_transport *tp)
{
	struct nats_ack *a, *next;
	uint64_t n;

	if (read(tp->sink->event_fd, &n, sizeof(n)) < 0) {
		/* nothing written since the last read */
	}
	pthread_mutex_lock(&tp->sink->lock);
	a = tp->sink->acks;
	tp->sink->acks = NULL;
	pthread_mutex_unlock(&tp->sink->lock);
	/* newest first: reverse, so a key's acks apply in publish order */
	struct nats_ack *ordered = NULL;

	for (; a; a = next) {
		next = a->next;
		a->next = ordered;
		ordered = a;
	}
	for (a = ordered; a; a = next) {
		next = a->next;
		for (struct nats_pub *p = tp->head; p; p = p->next) {
			if (p->state != PUB_SENT || strcmp(p->id, a->id) != 0)
				continue;
			pub_finish(p, a->ok ? WEBHOOK_DELIVERED : WEBHOOK_RETRY,
			           a->ok ? NULL : a->error);
			/* the stream had it already: a retry after a lost ack */
			if (a->duplicate)
				p->res->response_len = (size_t)snprintf(
				    p->res->response, sizeof(p->res->response), "duplicate");
			break;
		}
		free(a); /* matched, or its send was cancelled */
	}
}

/* Connects that ended: what waited for them is published, or fails with
 * the reason. */
static void collect_connects(struct nats_transport *tp)
{
	for (struct nats_conn *c = tp->conns; c; c = c->next) {
		if (!conn_collect(tp, c))
			continue;
		for (struct nats_pub *p = tp->head; p; p = p->next)
			if (p->conn == c && p->state == PUB_CONNECTING)
				pub_publish(p);
	}
}

static void nats_progress(void *arg, transport_done_fn *done, void *done_arg)
{
	struct nats_transport *tp = arg;
	struct nats_pub *p, *next;

	apply_acks(tp);
	collect_connects(tp);
	int64_t now = util_mono_ms();

	for (p = tp->head; p; p = p->next) {
		if (p->state == PUB_SENT && now > p->deadline_ms) {
			pub_finish(p, WEBHOOK_RETRY,
			           "no acknowledgement from the stream in time (is the server "
			           "reachable?)");
		} else if (p->state == PUB_CONNECTING && now > p->deadline_ms) {
			char error[TRANSPORT_ERRLEN];

			snprintf(error, sizeof(error),
			         "not connected to %s within %ld ms (still connecting)",
			         p->conn->servers, p->timeout_ms);
			pub_finish(p, WEBHOOK_RETRY, error);
		}
	}
	for (p = tp->head; p; p = next) {
		next = p->next;
		if (p->state != PUB_DONE)
			continue;
		pub_unlink(tp, p);
		done(done_arg, p->owner);
		pub_free(p);
	}
}

static void nats_cancel(void *arg, void *handle)
{
	struct nats_transport *tp = arg;
	struct nats_pub *p = handle;

	if (p->predecessor)
		p->predecessor->successor = NULL;
	if (p->successor) {
		p->successor->predecessor = NULL;
		if (p->successor->state == PUB_HELD)
			pub_publish(p->successor);
	}
	pub_unlink(tp, p);
	pub_free(p); /* an ack that comes later finds no send */
}

static unsigned nats_waitfds(void *arg, struct transport_waitfd *fds, unsigned max)
{
	struct nats_transport *tp = arg;

	if (max == 0)
		return 0;
	fds[0] = (struct transport_waitfd){ tp->sink->event_fd, POLLIN, 0 };
	return 1;
}

static void nats_wait(void *arg, struct transport_waitfd *fds, unsigned nfds, int timeout_ms)
{
	struct nats_transport *tp = arg;
	struct pollfd pfds[nfds + 1];

	for (unsigned i = 0; i < nfds; i++)
		pfds[i] = (struct pollfd){ fds[i].fd, fds[i].events, 0 };
	pfds[nfds] = (struct pollfd){ tp->sink->event_fd, POLLIN, 0 };
	if (poll(pfds, nfds + 1, timeout_ms) < 0)
		return;
	for (unsigned i = 0; i < nfds; i++)
		fds[i].revents = pfds[i].revents;
}

/* ---- the transport ------------------------------------------------------------- */

static bool nats_serves(const char *target)
{
	return strncasecmp(target, "nats://", 7) == 0 || strncasecmp(target, "tls://", 6) == 0;
}

static void nats_configure(void *arg, const struct relay_config *rc)
{
	struct nats_transport *tp = arg;

	/* turned on: every connection is vetted again at its next send */
	for (struct nats_conn *c = tp->conns; c; c = c->next) {
		if (rc->block_private_networks && !tp->blocking) {
			c->vetted = false;
			c->stale = c->job != NULL;
		} else if (!rc->block_private_networks) {
			c->stale = false; /* turned off again before the connect ended */
		}
	}
	tp->blocking = rc->block_private_networks;
	tp->rc = rc;
}

static void *nats_open(const struct relay_config *rc, int slots)
{
	struct nats_transport *tp = calloc(1, sizeof(*tp));
	struct nats_sink *sink = calloc(1, sizeof(*sink));

	(void)slots;
	if (!tp || !sink)
		goto fail;
	sink->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sink->event_fd < 0)
		goto fail;
	pthread_mutex_init(&sink->lock, NULL);
	tp->sink = sink;
	tp->rc = rc;
	tp->blocking = rc->block_private_networks;
	return tp;
fail:
	free(sink);
	free(tp);
	return NULL;
}

static void sink_drain(struct nats_sink *sink)
{
	struct nats_ack *a, *an;

	pthread_mutex_lock(&sink->lock);
	a = sink->acks;
	sink->acks = NULL;
	pthread_mutex_unlock(&sink->lock);
	for (; a; a = an) {
		an = a->next;
		free(a);
	}
}

/*
 * The connections go first (their unacknowledged publishes taken back, so
 * no late ack names them), then libnats's global threads and state with
 * nats_CloseAndWait, after which no callback can run and the sink goes.
 * Except when that did not finish in time (the sink stays, a thread may
 * still hold it), when a connect was still under way (its thread holds
 * libnats until it ends: see conn_abandon), or after a TLS connection: libnats 3.4's final cleanup
 * at exit then frees OpenSSL's compression methods without resetting them, and OpenSSL's own
 * cleanup frees them again and crashes the exit (nats-io/nats.c#904). Left open, libnats skips that
 * cleanup; its threads idle until the process ends, and the sink stays theirs.
 */
static void nats_close(void *arg)
{
	struct nats_transport *tp = arg;
	struct nats_conn *c, *cn;
	bool abandoned = false; /* a connect thread still runs */
	int64_t deadline_ms = util_mono_ms() + ABANDON_WAIT_MS;

	if (!tp)
		return;
	while (tp->head) {
		struct nats_pub *p = tp->head;

		pub_unlink(tp, p);
		pub_free(p);
	}
	for (c = tp->conns; c; c = cn) {
		natsMsgList pending = { 0 };

		cn = c->next;
		if (conn_abandon(c, deadline_ms))
			abandoned = true;
		if (c->js && js_PublishAsyncGetPendingList(&pending, c->js) == NATS_OK)
			natsMsgList_Destroy(&pending);
		conn_free(c);
	}
	/* a connect thread still running holds libnats: it stays open */
	if (tp->tls || abandoned) {
		sink_drain(tp->sink);
		sink_leave(tp->sink);
		free(tp);
		return;
	}
	/* Not closed in time (NATS_TIMEOUT, or any failure): a libnats
	 * thread may still be in on_pub_ack with the sink, so it is left
	 * to them as after TLS, never freed under them. */
	if (tp->used && nats_CloseAndWait(2000) != NATS_OK) {
		sink_drain(tp->sink);
		sink_leave(tp->sink);
		free(tp);
		return;
	}
	sink_drain(tp->sink);
	pthread_mutex_destroy(&tp->sink->lock);
	close(tp->sink->event_fd);
	free(tp->sink);
	free(tp);
}

const struct transport_ops transport_nats = {
	.name = "nats",
	.serves = nats_serves,
	.open = nats_open,
	.close = nats_close,
	.configure = nats_configure,
	.send = nats_send,
	.cancel = nats_cancel,
	.progress = nats_progress,
	.wait = nats_wait,
	.waitfds = nats_waitfds,
};
