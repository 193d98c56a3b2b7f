/* relay.c -- the delivery thread's transport-independent core: claim with leases, fence by
 * lease token, retry policy, results, the loop (see relay.h; the wire is in transport.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "relay.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "backoff.h"
#include "db.h"
#include "delivery.h"
#include "log.h"
#include "telemetry.h"
#include "transport.h"
#include "util.h"
#include "webhook.h"

#define RECLAIM_EVERY_S    5.0
#define RECONNECT_FIRST_MS 100
#define RECONNECT_CAP_MS   30000
#define SHUTDOWN_GRACE_MS  500

/*
 * The transports, one row each. A delivery goes through the first row that
 * serves its subscription's url, else through the first row (which then
 * reports what it cannot send). The first row also does the loop's waiting.
 */
static const struct transport_ops *const transports[] = {
	&transport_http,
	&transport_nats,
	&transport_kafka,
};
#define NTRANSPORTS ((int)(sizeof(transports) / sizeof(transports[0])))

struct relay {
	const struct config *cfg; /* this turn's: a reference from runtime_config_refresh */
	struct runtime *rt;
	pthread_t thread;
	struct relay_state st;
	PGconn *conn;
	void *tstate[NTRANSPORTS];  /* each transport's, from its open() */
	struct delivery **inflight; /* relay.concurrency slots; owned */
	int ninflight;
	struct delivery **finished; /* results not sent yet, relay.concurrency slots; owned */
	int nfinished;
	struct delivery **round;  /* the results of the round out, relay.concurrency slots; owned */
	struct delivery_round rd; /* the round out, while round_out */
	bool round_out;
	int64_t round_sent_ms;   /* monotonic */
	int64_t next_claim_ms;   /* monotonic */
	bool notified;           /* a NOTIFY came that no claim has served yet */
	bool more;               /* the last claim filled every free slot: more may be due */
	int64_t reconnect_at_ms; /* monotonic */
	int reconnect_delay_ms;  /* 0 while connected */
	double last_reclaim;
};

static int transport_for(const char *target)
{
	for (int i = 0; i < NTRANSPORTS; i++)
		if (transports[i]->serves(target))
			return i;
	return 0;
}

/* PostgreSQL text must be valid UTF-8 without NUL: each byte that does not
 * start a well-formed sequence becomes '?'. */
static void make_pg_text(char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t n = s[i] ? util_utf8_seq((const unsigned char *)s + i, len - i) : 0;

		if (n == 0)
			s[i++] = '?';
		else
			i += n;
	}
	s[len] = '\0';
}

/* ---- database ----------------------------------------------------------------- */

/* Guards last_error of every relay_state; never destroyed. */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

/* A claim or a connection failed: no progress (no heartbeat) until a claim
 * works again. /health shows `err` up to its DETAIL, which may quote rows. */
static void set_failing(struct relay *r, const char *err)
{
	char *detail;

	pthread_mutex_lock(&error_lock);
	snprintf(r->st.last_error, sizeof(r->st.last_error), "%s", err);
	detail = strstr(r->st.last_error, " DETAIL: ");
	if (detail)
		*detail = '\0';
	pthread_mutex_unlock(&error_lock);
	atomic_store(&r->st.failing, 1);
}

void relay_last_error(const struct relay_state *st, char *buf, size_t len)
{
	pthread_mutex_lock(&error_lock);
	snprintf(buf, len, "%s", atomic_load(&st->failing) ? st->last_error : "");
	pthread_mutex_unlock(&error_lock);
}

static void close_db(struct relay *r)
{
	PQfinish(r->conn);
	r->conn = NULL;
	atomic_store(&r->st.connected, 0);
}

static bool connect_db(struct relay *r)
{
	char err[DB_ERRLEN];

	r->conn = db_connect(conf_conninfo(r->cfg), "pgeventd relay", err, sizeof(err));
	if (!r->conn)
		goto fail;
	if ((r->cfg->listen && !db_exec(r->conn, "LISTEN pgeventd_deliveries", err, sizeof(err))) ||
	    !delivery_prepare(r->conn, err, sizeof(err)))
		goto fail;
	atomic_store(&r->st.connected, 1);
	r->reconnect_delay_ms = 0;
	return true;
fail:
	log_kv(LOG_WARNING, "relay: database connection failed", "error", err, NULL);
	set_failing(r, err);
	close_db(r);
	r->reconnect_delay_ms =
	    backoff_reconnect_ms(r->reconnect_delay_ms, RECONNECT_FIRST_MS, RECONNECT_CAP_MS);
	r->reconnect_at_ms = util_mono_ms() + r->reconnect_delay_ms;
	return false;
}

/* The delay after failed attempt n: relay.backoff.schedule_ms when set
 * (its last entry repeating), else base/factor/cap; then +-jitter. */
static long long retry_delay_ms(const struct relay_config *rc, int attempt)
{
	const struct intlist *l = &rc->schedule_ms;

	if (l->n == 0)
		return backoff_delay_ms(&rc->backoff, attempt, backoff_random());
	double base = (double)l->v[(attempt < 1 ? 1 : attempt > l->n ? l->n : attempt) - 1];
	double d = base * (1.0 + rc->backoff.jitter * (2.0 * backoff_random() - 1.0));

	return d < 0 ? 0 : (long long)d;
}

/* Turn what the transport reported into the result and the finish
 * parameters: the retry delay is the receiver's hint, else the policy's. */
static void judge_delivery_result(struct relay *r, struct delivery *d)
{
	struct transport_result *res = &d->res;

	d->duration_ms = (util_mono_s() - d->started_mono) * 1000.0;
	d->retry_ms = 0;
	if (res->verdict == WEBHOOK_RETRY)
		d->retry_ms = res->retry_after_ms >= 0 ? res->retry_after_ms
		                                       : retry_delay_ms(&r->cfg->relay, d->attempt);
	d->outcome = webhook_verdict_name(res->verdict); /* delivered, retry, failed, gone */
	make_pg_text(res->response, res->response_len);
	snprintf(d->s_attempt, sizeof(d->s_attempt), "%d", d->attempt);
	snprintf(d->s_status, sizeof(d->s_status), "%ld", res->status);
	snprintf(d->s_started, sizeof(d->s_started), "%.6f", d->started_real);
	snprintf(d->s_duration, sizeof(d->s_duration), "%.3f", d->duration_ms);
	snprintf(d->s_retry, sizeof(d->s_retry), "%lld", d->retry_ms);
}

/* Metrics, counters, the log line, and the wake-up for a retry. */
static void report_delivery(struct relay *r, struct delivery *d)
{
	const char *final = !d->written ? "unrecorded" : !d->applied ? "stale" : d->outcome;
	enum webhook_verdict v = d->res.verdict;
	/* the last attempt allowed: the result made the delivery dead (as the
	 * finish decides, from the same max_attempts unless it changed since
	 * the claim), not a retry */
	bool dead = d->written && d->applied && v == WEBHOOK_RETRY && d->max_attempts > 0 &&
	            d->attempt >= d->max_attempts;

	if (dead)
		final = "dead";

	telemetry_delivery(d->sub_name, final, d->duration_ms / 1000.0);
	if (d->applied) {
		if (v == WEBHOOK_DELIVERED)
			atomic_fetch_add(&r->st.delivered, 1);
		else if (v == WEBHOOK_RETRY && !dead)
			atomic_fetch_add(&r->st.retried, 1);
		else
			atomic_fetch_add(&r->st.failed, 1);
	}
	log_kv(v == WEBHOOK_DELIVERED ? LOG_INFO : LOG_WARNING, "delivery attempted", "delivery_id",
	       d->id, "subscription", d->sub_name, "attempt", d->s_attempt, "http_status",
	       d->res.status ? d->s_status : NULL, "duration_ms", d->s_duration, "outcome", final,
	       "retry_in_ms", v == WEBHOOK_RETRY && !dead ? d->s_retry : NULL, "error",
	       d->res.error[0] ? d->res.error : NULL, "db_error", d->dberr[0] ? d->dberr : NULL,
	       NULL);
	/* A retry may be due before the next poll: wake up for it. */
	if (v == WEBHOOK_RETRY && d->applied && !dead) {
		int64_t due = util_mono_ms() + d->retry_ms;

		if (due < r->next_claim_ms)
			r->next_claim_ms = due;
	}
}

/* Hand the delivery of `row` to its transport; false with why in `err`
 * when it cannot even be sent. */
static bool send_claimed(struct relay *r, const PGresult *res, int row, char *err, size_t errlen)
{
	struct delivery *d = calloc(1, sizeof(*d));
	const struct transport_message m = {
		.id = PQgetvalue(res, row, DELIVERY_COL_ID),
		.body = PQgetvalue(res, row, DELIVERY_COL_BODY),
		.target = PQgetvalue(res, row, DELIVERY_COL_URL),
		.secret = PQgetvalue(res, row, DELIVERY_COL_SECRET),
		.scheme = PQgetvalue(res, row, DELIVERY_COL_SCHEME),
		.id_header = PQgetisnull(res, row, DELIVERY_COL_ID_HEADER)
		                 ? NULL
		                 : PQgetvalue(res, row, DELIVERY_COL_ID_HEADER),
		.timestamp_header = PQgetisnull(res, row, DELIVERY_COL_TS_HEADER)
		                        ? NULL
		                        : PQgetvalue(res, row, DELIVERY_COL_TS_HEADER),
		.signature_header = PQgetisnull(res, row, DELIVERY_COL_SIG_HEADER)
		                        ? NULL
		                        : PQgetvalue(res, row, DELIVERY_COL_SIG_HEADER),
		.headers = PQgetvalue(res, row, DELIVERY_COL_HEADERS),
		.timeout_ms = atol(PQgetvalue(res, row, DELIVERY_COL_TIMEOUT_MS)),
		.order_key = PQgetisnull(res, row, DELIVERY_COL_ORDER_KEY)
		                 ? NULL
		                 : PQgetvalue(res, row, DELIVERY_COL_ORDER_KEY),
	};

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	snprintf(d->id, sizeof(d->id), "%s", m.id);
	snprintf(d->sub_name, sizeof(d->sub_name), "%s",
	         PQgetvalue(res, row, DELIVERY_COL_SUB_NAME));
	d->attempt = atoi(PQgetvalue(res, row, DELIVERY_COL_ATTEMPT));
	d->max_attempts = atoi(PQgetvalue(res, row, DELIVERY_COL_MAX_ATTEMPTS));
	snprintf(d->lease, sizeof(d->lease), "%s", PQgetvalue(res, row, DELIVERY_COL_LEASE));
	d->ordered = m.order_key != NULL;
	d->transport = transport_for(m.target);
	d->handle =
	    transports[d->transport]->send(r->tstate[d->transport], &m, &d->res, d, err, errlen);
	if (!d->handle) {
		free(d);
		return false;
	}
	d->started_real = util_real_s();
	d->started_mono = util_mono_s();
	r->inflight[r->ninflight++] = d;
	return true;
}

/* Send what a claim returned (`res`, cleared here; NULL: the claim failed
 * with `err`); how many were claimed, -1 on error. */
static int take_claimed(struct relay *r, PGresult *res, char *err, size_t errlen)
{
	int n;

	if (!res) {
		log_kv(LOG_WARNING, "relay: claim failed", "error", err, NULL);
		set_failing(r, err);
		return -1;
	}
	atomic_store(&r->st.failing, 0);
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		if (send_claimed(r, res, i, err, errlen))
			continue;
		/* Cannot even be sent (bad header, unsignable secret): a
		 * permanent failure of this delivery, recorded as such. */
		delivery_fail_unsendable(r->conn, res, i, err);
		log_kv(LOG_ERROR, "delivery cannot be sent", "delivery_id",
		       PQgetvalue(res, i, DELIVERY_COL_ID), "subscription",
		       PQgetvalue(res, i, DELIVERY_COL_SUB_NAME), "error", err, NULL);
	}
	PQclear(res);
	atomic_store(&r->st.in_flight, r->ninflight);
	telemetry_deliveries_in_flight(r->ninflight);
	return n;
}

/* The lease margin of a claim: connecting plus the configured margin. */
static int claim_margin_ms(const struct relay *r)
{
	return r->cfg->relay.connect_timeout_ms + r->cfg->relay.lease_margin_ms;
}

/* The slots neither in flight nor holding a result not sent yet: rounds
 * are pipelined, so results wait in `finished` while a round is out, and
 * every delivery claimed now may finish before they are sent. */
static int free_slots(const struct relay *r)
{
	return r->cfg->relay.concurrency - r->ninflight - r->nfinished;
}

/* Claim up to the free slots; returns how many were claimed, -1 on error. */
static int claim_deliveries(struct relay *r)
{
	int free_slots_now = free_slots(r);
	char err[DB_ERRLEN];

	if (free_slots_now <= 0)
		return 0;
	return take_claimed(
	    r, delivery_claim(r->conn, free_slots_now, claim_margin_ms(r), err, sizeof(err)), err,
	    sizeof(err));
}

/* After a claim at `now` that took `n`: when to claim next. */
static void claimed_at(struct relay *r, int64_t now, int n)
{
	r->notified = false;
	/* A claim that got something may have left more behind (a
	 * subscription at its cap, or more due than free slots): claim
	 * again as soon as a slot frees up. */
	r->more = n > 0;
	r->next_claim_ms = now + r->cfg->poll_interval_ms;
}

/* Put the leases of the deliveries still in flight back (shutdown). */
static void release_inflight(struct relay *r)
{
	for (int i = 0; i < r->ninflight; i++) {
		struct delivery *d = r->inflight[i];
		char err[DB_ERRLEN];

		if (!db_broken(r->conn) && !delivery_release(r->conn, d, err, sizeof(err)))
			log_kv(LOG_WARNING, "relay: could not release a lease", "delivery_id",
			       d->id, "error", err, NULL);
		transports[d->transport]->cancel(r->tstate[d->transport], d->handle);
		free(d);
	}
	if (r->ninflight)
		log_kv(LOG_NOTICE, "relay: unfinished deliveries put back to pending", NULL);
	r->ninflight = 0;
	atomic_store(&r->st.in_flight, 0);
	telemetry_deliveries_in_flight(0);
}

/* transport_done_fn: a send ended; its result is written with the turn's others. */
static void on_sent(void *arg, void *owner)
{
	struct relay *r = arg;
	struct delivery *d = owner;

	/* ninflight + nfinished never exceed the slots (free_slots()): a
	 * result past them would be written past the end of `finished`. */
	if (r->nfinished >= r->cfg->relay.concurrency) {
		log_kv(LOG_ERROR, "relay: more results than slots", NULL);
		abort();
	}
	d->handle = NULL;
	judge_delivery_result(r, d);
	for (int i = 0; i < r->ninflight; i++) {
		if (r->inflight[i] == d) {
			r->inflight[i] = r->inflight[--r->ninflight];
			break;
		}
	}
	r->finished[r->nfinished++] = d;
}

/* Log and count the results of a round that is over, and free them. */
static void report_round(struct relay *r, struct delivery **ds, int n)
{
	for (int i = 0; i < n; i++) {
		report_delivery(r, ds[i]);
		free(ds[i]);
	}
}

/* The round out is over (`st`): send what it claimed, report its results. */
static void round_over(struct relay *r, enum delivery_round_state st)
{
	struct delivery_round *rd = &r->rd;

	r->round_out = false;
	if (rd->claims) {
		char err[DB_ERRLEN];
		int got;

		snprintf(err, sizeof(err), "%s", rd->err);
		got = take_claimed(r, rd->claimed, err, sizeof(err));
		rd->claimed = NULL;
		claimed_at(r, r->round_sent_ms, got);
		/* run --once: let the loop see at once that nothing is left */
		if (got <= 0 && r->ninflight == 0)
			r->next_claim_ms = 0;
	}
	if (st == DELIVERY_ROUND_BROKEN) {
		log_kv(LOG_WARNING, "relay: pipeline left in a bad state, reconnecting", NULL);
		close_db(r);
	}
	report_round(r, rd->ds, rd->n);
	/* A slot came free: claim again at once if more is due, or if
	 * deliveries were queued while every slot was busy. */
	if (rd->n > 0 && !rd->claims && (r->more || r->notified))
		r->next_claim_ms = 0;
	*rd = (struct delivery_round){ 0 };
	atomic_store(&r->st.in_flight, r->ninflight);
	telemetry_deliveries_in_flight(r->ninflight);
}

/* Read what came of the round out, if one is; `block`: until it is over. */
static void poll_round(struct relay *r, bool block)
{
	enum delivery_round_state st;

	if (!r->round_out)
		return;
	st = delivery_round_poll(r->conn, &r->rd, block);
	if (st != DELIVERY_ROUND_WAITING)
		round_over(r, st);
}

/* Shutdown: the round out gets until `deadline` (monotonic ms) to come
 * back; past it, the connection is closed and its results stay unrecorded
 * (their leases expire: sent again, at least once). */
static void poll_round_until(struct relay *r, int64_t deadline)
{
	while (r->round_out) {
		int64_t left = deadline - util_mono_ms();
		struct pollfd pfd = { .fd = PQsocket(r->conn), .events = POLLIN };

		if (left <= 0 || pfd.fd < 0) {
			struct delivery_round *rd = &r->rd;

			log_kv(LOG_WARNING,
			       "relay: the database did not answer before the shutdown timeout",
			       NULL);
			close_db(r);
			PQclear(rd->claimed);
			rd->claimed = NULL;
			rd->claims = false;
			for (int i = 0; i < rd->n; i++) {
				snprintf(rd->ds[i]->dberr, sizeof(rd->ds[i]->dberr),
				         "the database did not answer before the shutdown timeout");
				rd->ds[i]->written = rd->ds[i]->applied = false;
			}
			round_over(r, DELIVERY_ROUND_DONE);
			return;
		}
		poll(&pfd, 1, (int)(left > 100 ? 100 : left));
		poll_round(r, false);
	}
}

/*
 * Send the results not yet sent as a round, with the next claim when
 * slots came free and more is due; the transports keep sending while it
 * is out, and the results that finish meanwhile make the next round.
 */
static void send_round(struct relay *r)
{
	int n = r->nfinished;
	bool claims = (r->more || r->notified) && !atomic_load(&r->rt->stopping);
	struct delivery **ds = r->finished;

	if (n == 0 || r->round_out)
		return;
	r->finished = r->round;
	r->round = ds;
	r->nfinished = 0;
	if (!r->conn || db_broken(r->conn)) {
		for (int i = 0; i < n; i++) {
			snprintf(ds[i]->dberr, sizeof(ds[i]->dberr), "no database connection");
			ds[i]->written = ds[i]->applied = false;
		}
		report_round(r, ds, n);
		return;
	}
	r->round_sent_ms = util_mono_ms();
	r->round_out = true;
	if (!delivery_round_send(r->conn, &r->cfg->relay, &r->rd, ds, n, claims ? free_slots(r) : 0,
	                         claim_margin_ms(r)))
		round_over(r, r->rd.broken ? DELIVERY_ROUND_BROKEN : DELIVERY_ROUND_DONE);
}

/* Move every transport along, then send what finished. */
static void collect_finished(struct relay *r)
{
	for (int i = 0; i < NTRANSPORTS; i++)
		transports[i]->progress(r->tstate[i], on_sent, r);
	send_round(r);
	atomic_store(&r->st.in_flight, r->ninflight);
	telemetry_deliveries_in_flight(r->ninflight);
}

/* Expired leases back to pending, every RECLAIM_EVERY_S. */
static void reclaim_expired(struct relay *r)
{
	char err[DB_ERRLEN], count[16];
	int n;

	r->last_reclaim = util_mono_s();
	n = delivery_reclaim(r->conn, err, sizeof(err));
	if (n < 0) {
		log_kv(LOG_WARNING, "relay: lease reclaim failed", "error", err, NULL);
		set_failing(r, err);
	} else if (n > 0) {
		snprintf(count, sizeof(count), "%d", n);
		log_kv(LOG_NOTICE, "relay: expired leases put back to pending", "deliveries", count,
		       NULL);
	}
	n = delivery_unstrand(r->conn, err, sizeof(err));
	if (n < 0) {
		log_kv(LOG_WARNING, "relay: releasing waiting deliveries failed", "error", err,
		       NULL);
		set_failing(r, err);
	} else if (n > 0) {
		snprintf(count, sizeof(count), "%d", n);
		log_kv(LOG_NOTICE,
		       "relay: deliveries left waiting by an unordered subscription made due",
		       "deliveries", count, NULL);
	}
}

/* Wait for the transports' sockets, a NOTIFY, shutdown, or the next claim. */
static void wait_for_work(struct relay *r, bool stopping)
{
	struct transport_waitfd fds[8];
	unsigned nfds = 0;
	int pq = -1;
	int64_t wait = r->next_claim_ms - util_mono_ms();

	if (!r->conn)
		wait = r->reconnect_at_ms - util_mono_ms();
	/* no claim before the round out is back: its answer wakes us */
	if (r->round_out)
		wait = 1000;
	/* results wait to be sent (a round came back since they finished) */
	if (!r->round_out && r->nfinished > 0)
		wait = 0;
	if (stopping)
		wait = 100;
	wait = wait < 0 ? 0 : wait > 1000 ? 1000 : wait;
	if (r->conn && (r->cfg->listen || r->round_out) && PQsocket(r->conn) >= 0) {
		pq = (int)nfds;
		fds[nfds++] = (struct transport_waitfd){ PQsocket(r->conn), POLLIN, 0 };
	}
	if (!stopping)
		fds[nfds++] = (struct transport_waitfd){ r->rt->wake_fd, POLLIN, 0 };
	for (int i = 1; i < NTRANSPORTS; i++)
		if (transports[i]->waitfds)
			nfds +=
			    transports[i]->waitfds(r->tstate[i], fds + nfds,
			                           (unsigned)(sizeof(fds) / sizeof(fds[0])) - nfds);
	transports[0]->wait(r->tstate[0], fds, nfds, (int)wait);
	if (pq >= 0 && fds[pq].revents && r->cfg->listen && db_drain_notifies(r->conn) > 0) {
		r->notified = true;
		r->next_claim_ms = 0;
	}
}

/* A new configuration: it shapes the next claim and the transports' sends. */
static void apply_new_config(struct relay *r)
{
	r->cfg = runtime_config_refresh(r->rt, r->cfg);
	/* a new poll interval (or anything else) shapes the next claim */
	r->next_claim_ms = 0;
	for (int i = 0; i < NTRANSPORTS; i++)
		transports[i]->configure(r->tstate[i], &r->cfg->relay);
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	int64_t stop_deadline = 0;

	log_kv(LOG_INFO, "relay started", NULL);
	/* the start is the reference a stall is measured from */
	atomic_store(&r->st.heartbeat, util_mono_s());
	for (;;) {
		int64_t now = util_mono_ms();
		bool stopping = atomic_load(&r->rt->stopping) != 0;

		/* A turn is progress unless claims (or connecting) keep failing:
		 * a back-off is not. */
		if (!atomic_load(&r->st.failing))
			atomic_store(&r->st.heartbeat, util_mono_s());
		/* relay.concurrency needs a restart (the slots are sized at start);
		 * every other relay.* key applies from this turn on. */
		if (!runtime_config_current(r->rt, r->cfg))
			apply_new_config(r);
		poll_round(r, false);
		if (stopping && !stop_deadline)
			stop_deadline = now + r->cfg->shutdown_timeout_ms;
		if (stopping && ((r->ninflight == 0 && r->nfinished == 0 && !r->round_out) ||
		                 atomic_load(&r->rt->aborting) || now >= stop_deadline))
			break;
		/* run --once cannot wait for a database that is gone: the
		 * workers have stopped, and what is left stays queued. */
		if (r->rt->once && !r->conn && r->ninflight == 0 &&
		    atomic_load(&r->rt->finished) >= r->cfg->workers)
			break;
		if (db_broken(r->conn)) {
			if (r->conn) {
				log_kv(LOG_WARNING, "relay: database connection lost", NULL);
				close_db(r);
			}
			if (now >= r->reconnect_at_ms && connect_db(r))
				r->next_claim_ms = 0;
		}
		/* While a round is out the connection is its own: the chores wait. */
		if (r->conn && !stopping && !r->round_out) {
			if (util_mono_s() - r->last_reclaim >= RECLAIM_EVERY_S)
				reclaim_expired(r);
			/* Claim into whatever slots are free: each subscription is
			 * capped in the claim (max_in_flight, rate limit), and the
			 * subscriptions with due work share the free slots fairly. */
			if (now >= r->next_claim_ms && free_slots(r) <= 0) {
				/* no free slot: collect_finished() wakes us */
				r->next_claim_ms = now + r->cfg->poll_interval_ms;
			} else if (now >= r->next_claim_ms) {
				int n = claim_deliveries(r);

				claimed_at(r, now, n);
				/* run --once: done when the workers are and nothing is due */
				if (r->rt->once && n == 0 && r->ninflight == 0 &&
				    atomic_load(&r->rt->finished) >= r->cfg->workers)
					break;
			}
		}
		collect_finished(r);

		/* A NOTIFY that libpq read while it waited for a result (a claim,
		 * a result write) is in its buffer, where poll() cannot see it. */
		if (r->conn && r->cfg->listen && db_drain_notifies(r->conn) > 0) {
			r->notified = true;
			r->next_claim_ms = 0;
		}
		/* Likewise the answer of the round out, read with the NOTIFY. */
		poll_round(r, false);
		wait_for_work(r, stopping);
	}
	/* What finished before the stop is recorded before the leases go back,
	 * within shutdown_timeout_ms of the stop (of now after run --once),
	 * and at least SHUTDOWN_GRACE_MS from here. */
	{
		int64_t now = util_mono_ms();
		int64_t deadline =
		    stop_deadline ? stop_deadline : now + r->cfg->shutdown_timeout_ms;

		if (deadline < now + SHUTDOWN_GRACE_MS)
			deadline = now + SHUTDOWN_GRACE_MS;
		poll_round_until(r, deadline);
		send_round(r);
		poll_round_until(r, deadline);
	}
	release_inflight(r);
	close_db(r);
	runtime_config_put(r->rt, r->cfg);
	r->cfg = NULL;
	log_kv(LOG_INFO, "relay stopped", NULL);
	atomic_store(&r->rt->relay_done, 1);
	return NULL;
}

static void relay_free(struct relay *r)
{
	for (int i = 0; i < NTRANSPORTS; i++)
		if (r->tstate[i])
			transports[i]->close(r->tstate[i]);
	free(r->inflight);
	free(r->finished);
	free(r->round);
	free(r);
}

struct relay *relay_start(struct runtime *rt)
{
	struct relay *r = calloc(1, sizeof(*r));
	int slots, rc;

	if (!r)
		return NULL;
	r->cfg = runtime_config_refresh(rt, NULL);
	r->rt = rt;
	slots = r->cfg->relay.concurrency;
	r->inflight = calloc((size_t)slots, sizeof(*r->inflight));
	r->finished = calloc((size_t)slots, sizeof(*r->finished));
	r->round = calloc((size_t)slots, sizeof(*r->round));
	if (!r->inflight || !r->finished || !r->round)
		goto fail;
	for (int i = 0; i < NTRANSPORTS; i++)
		if (!(r->tstate[i] = transports[i]->open(&r->cfg->relay, slots)))
			goto fail;
	rc = pthread_create(&r->thread, NULL, relay_main, r);
	if (rc != 0) {
		log_kv(LOG_ERROR, "cannot start the relay thread", "error", strerror(rc), NULL);
		goto fail;
	}
	return r;
fail:
	runtime_config_put(rt, r->cfg);
	relay_free(r);
	return NULL;
}

void relay_join(struct relay *r)
{
	if (!r)
		return;
	pthread_join(r->thread, NULL);
	relay_free(r);
}

const struct relay_state *relay_state(const struct relay *r)
{
	return r ? &r->st : NULL;
}
