/*
 * httpd.c -- a tiny embedded HTTP/1.x server: one poll() thread, GET and
 * HEAD, one request per connection; the head is parsed by http_parse.c,
 * the socket opened by listener.c. A little over 600 lines because the
 * connection state machine (read, answer, write, linger, shed at the cap)
 * is one concern best read in one place.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "util.h"

#define DEFAULT_MAX_CLIENTS  32
#define DEFAULT_TIMEOUT_MS   2000
#define POLL_MAX_MS          500 /* bounds a turn, so a missed wake-up still stops it */
#define ACCEPT_BATCH         16  /* connections taken per turn */
#define ACCEPT_PAUSE_MS      100 /* after EMFILE and the like, instead of spinning */
#define SHED_GRACE_MS        250 /* a new connection's time to send its head before it may be shed */
#define LINGER_MAX_MS        1000   /* how long to drain a client after the answer */
#define LINGER_MAX_BYTES     262144 /* how much to drain before giving up */
#define TEXT_PLAIN           "text/plain; charset=utf-8"
#define CONTENT_TYPE_MAX_LEN 128

/*
 * A connection's life: READING the head (deadline: accept + read timeout),
 * WRITING the answer (deadline: answer + read timeout), then LINGERING:
 * our side is shut down and whatever the client still sends (a body, the
 * rest of an oversized head) is read and dropped until it closes. Closing
 * with unread bytes would make the kernel send a reset that can destroy
 * the answer before the client reads it.
 */
enum client_state { CLIENT_FREE, CLIENT_READING, CLIENT_WRITING, CLIENT_LINGERING };

struct client {
	int fd; /* owned; -1 when the slot is free */
	enum client_state state;
	int64_t accepted_ms;     /* monotonic; the oldest reader is shed first */
	int64_t deadline_ms;     /* monotonic; the current state's time limit */
	size_t in_len;           /* bytes of in[] read */
	size_t out_len, out_off; /* bytes of out[] to send; bytes of out[] + body sent */
	char *body;              /* the handler's body; owned, freed at close */
	size_t body_len;         /* bytes of body to send (0 for HEAD) */
	size_t drained;          /* bytes dropped while lingering */
	char in[HTTP_MAX_HEAD];
	char out[512]; /* status line and headers (and a server error's body) */
};

struct httpd {
	int lfd;     /* listen socket; owned */
	int wake[2]; /* self-pipe: httpd_stop writes, the thread polls; owned */
	int port;
	int max_clients, timeout_ms;
	http_handler_fn fn;
	void *arg; /* borrowed, passed to fn */
	pthread_t thread;
	atomic_bool stopping;
	int64_t accept_resume_ms; /* listen socket left out of poll until then */
	int nclients;
	struct client *clients; /* max_clients slots; owned */
	struct pollfd *pfds;    /* max_clients + 2; owned */
	int *pfd_client;        /* the client of each client pollfd, in order; owned */
};

static const struct {
	int status;
	const char *reason;
} reasons[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 202, "Accepted" },
	{ 204, "No Content" },
	{ 301, "Moved Permanently" },
	{ 302, "Found" },
	{ 304, "Not Modified" },
	{ 307, "Temporary Redirect" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 408, "Request Timeout" },
	{ 414, "URI Too Long" },
	{ 429, "Too Many Requests" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 505, "HTTP Version Not Supported" },
};

/* The answer to each parse failure. */
static const int parse_status[] = {
	[HTTP_PARSE_BAD] = 400,
	[HTTP_PARSE_TOO_LARGE] = 431,
	[HTTP_PARSE_URI_TOO_LONG] = 414,
	[HTTP_PARSE_VERSION] = 505,
};

static const char *reason_phrase(int status)
{
	for (size_t k = 0; k < sizeof(reasons) / sizeof(reasons[0]); k++)
		if (reasons[k].status == status)
			return reasons[k].reason;
	return ""; /* the reason phrase may be empty (RFC 9112 4) */
}

/* IMF-fixdate, without strftime: locale names would be wrong. */
static void http_date(char *buf, size_t len)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = time(NULL);
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, len, "Thu, 01 Jan 1970 00:00:00 GMT");
		return;
	}
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
	         months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static bool content_type_ok(const char *s)
{
	size_t n = 0;

	if (!s || !*s)
		return false;
	for (; s[n]; n++)
		if (n == CONTENT_TYPE_MAX_LEN || ((unsigned char)s[n] < 0x20 && s[n] != '\t') ||
		    (unsigned char)s[n] >= 0x7f)
			return false;
	return true;
}

static void out_add(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append to c->out; the inputs are bounded so it never fills, but a
 * truncation would only cut the text, never overflow. */
static void out_add(struct client *c, const char *fmt, ...)
{
	size_t room = sizeof(c->out) - c->out_len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->out + c->out_len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->out_len += (size_t)n < room ? (size_t)n : room - 1;
}

enum { HEAD_ALLOW = 1, HEAD_NO_CONTENT = 2 };

static void format_head(struct client *c, int status, const char *ctype, size_t body_len,
                        unsigned flags)
{
	char date[40];

	http_date(date, sizeof(date));
	c->out_len = 0;
	out_add(c, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason_phrase(status), date);
	if (!(flags & HEAD_NO_CONTENT))
		out_add(c, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, body_len);
	if (flags & HEAD_ALLOW)
		out_add(c, "Allow: GET, HEAD\r\n");
	out_add(c, "Connection: close\r\n\r\n");
}

/* A server-made answer: the reason phrase is the body. */
static void answer_error(struct client *c, int status, bool head_only)
{
	const char *reason = reason_phrase(status);

	format_head(c, status, TEXT_PLAIN, strlen(reason) + 1, status == 405 ? HEAD_ALLOW : 0);
	if (!head_only)
		out_add(c, "%s\n", reason);
}

static void answer_handler(struct httpd *h, struct client *c, const struct http_request *req)
{
	struct http_response resp = { 0, NULL, NULL, 0 };
	bool head_only = req->method == HTTP_METHOD_HEAD, bodiless;

	h->fn(h->arg, req, &resp);
	if (resp.status < 200 || resp.status > 599) {
		free(resp.body);
		answer_error(c, 500, head_only);
		return;
	}
	bodiless = resp.status == 204 || resp.status == 304; /* no Content-Length allowed */
	if (!resp.body || bodiless)
		resp.body_len = 0;
	format_head(c, resp.status,
	            content_type_ok(resp.content_type) ? resp.content_type : TEXT_PLAIN,
	            resp.body_len, bodiless ? HEAD_NO_CONTENT : 0);
	if (head_only || resp.body_len == 0) {
		free(resp.body);
		return;
	}
	c->body = resp.body;
	c->body_len = resp.body_len;
}

static void client_close(struct httpd *h, struct client *c)
{
	if (c->state == CLIENT_FREE)
		return;
	close(c->fd);
	free(c->body);
	c->fd = -1;
	c->body = NULL;
	c->body_len = 0;
	c->state = CLIENT_FREE;
	h->nclients--;
}

/* Drop what the client sends until it closes; close on EOF, error or too much. */
static void client_drain(struct httpd *h, struct client *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in, sizeof(c->in), 0);

		if (r > 0) {
			c->drained += (size_t)r;
			if (c->drained <= LINGER_MAX_BYTES)
				continue;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		}
		client_close(h, c);
		return;
	}
}

static void client_linger(struct httpd *h, struct client *c)
{
	int linger = h->timeout_ms < LINGER_MAX_MS ? h->timeout_ms : LINGER_MAX_MS;

	free(c->body);
	c->body = NULL;
	c->body_len = 0;
	if (shutdown(c->fd, SHUT_WR) < 0) {
		client_close(h, c);
		return;
	}
	c->state = CLIENT_LINGERING;
	c->deadline_ms = util_mono_ms() + linger;
	c->drained = 0;
	client_drain(h, c);
}

/* Send as much of the answer as the socket takes; linger once it is all sent. */
static void client_write(struct httpd *h, struct client *c)
{
	for (;;) {
		size_t total = c->out_len + c->body_len;
		struct iovec iov[2];
		struct msghdr msg;
		ssize_t r;

		if (c->out_off >= total) {
			client_linger(h, c);
			return;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		if (c->out_off < c->out_len) {
			iov[0].iov_base = c->out + c->out_off;
			iov[0].iov_len = c->out_len - c->out_off;
			iov[1].iov_base = c->body;
			iov[1].iov_len = c->body_len;
			msg.msg_iovlen = c->body_len ? 2 : 1;
		} else {
			iov[0].iov_base = c->body + (c->out_off - c->out_len);
			iov[0].iov_len = total - c->out_off;
			msg.msg_iovlen = 1;
		}
		r = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (r >= 0)
			c->out_off += (size_t)r;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		else if (errno != EINTR) {
			client_close(h, c); /* EPIPE, ECONNRESET: nobody to answer */
			return;
		}
	}
}

/* Turn a finished (or failed) head into an answer and start sending it. */
static void client_answer(struct httpd *h, struct client *c, enum http_parse p,
                          const struct http_request *req)
{
	if (p == HTTP_PARSE_OK && req->method == HTTP_METHOD_OTHER)
		answer_error(c, 405, false);
	else if (p == HTTP_PARSE_OK)
		answer_handler(h, c, req);
	else
		answer_error(c, parse_status[p], req->method == HTTP_METHOD_HEAD);
	c->state = CLIENT_WRITING;
	c->deadline_ms = util_mono_ms() + h->timeout_ms;
	c->out_off = 0;
	client_write(h, c);
}

/* Read what is there (at most the head cap), then parse it all again:
 * the parser is stateless and the head is small. */
static void client_read(struct httpd *h, struct client *c)
{
	struct http_request req;
	enum http_parse p;
	bool eof = false, got = false;

	while (c->in_len < sizeof(c->in)) {
		ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

		if (r > 0) {
			c->in_len += (size_t)r;
			got = true;
		} else if (r == 0) {
			eof = true;
			break;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else if (errno != EINTR) {
			client_close(h, c);
			return;
		}
	}
	if (got) {
		p = http_parse_request(c->in, c->in_len, &req);
		if (p == HTTP_PARSE_INCOMPLETE && c->in_len == sizeof(c->in))
			p = HTTP_PARSE_TOO_LARGE; /* cannot happen; never stop reading silently */
		if (p != HTTP_PARSE_INCOMPLETE) {
			client_answer(h, c, p, &req);
			return;
		}
	}
	if (eof)
		client_close(h, c); /* gone before the end of its head */
}

/*
 * At the cap, the client a new connection may replace: the oldest one
 * still sending its head (idle or trickling) that has had SHED_GRACE_MS to
 * send it, so a probe, which sends its request at once, is answered before
 * it could be shed. NULL when there is none yet.
 */
static struct client *shed_candidate(struct httpd *h, int64_t now)
{
	struct client *oldest = NULL;

	for (int i = 0; i < h->max_clients; i++) {
		struct client *c = &h->clients[i];

		if (c->state == CLIENT_READING && now - c->accepted_ms >= SHED_GRACE_MS &&
		    (!oldest || c->accepted_ms < oldest->accepted_ms))
			oldest = c;
	}
	return oldest;
}

/* When the next reader becomes a shed candidate; INT64_MAX when none will. */
static int64_t next_shed_ms(const struct httpd *h)
{
	int64_t at = INT64_MAX;

	for (int i = 0; i < h->max_clients; i++) {
		const struct client *c = &h->clients[i];

		if (c->state == CLIENT_READING && c->accepted_ms + SHED_GRACE_MS < at)
			at = c->accepted_ms + SHED_GRACE_MS;
	}
	return at;
}

/* A free slot, or, at the cap, a shed candidate's; NULL when neither. */
static struct client *slot_for_new(struct httpd *h, int64_t now)
{
	if (h->nclients < h->max_clients)
		for (int i = 0; i < h->max_clients; i++)
			if (h->clients[i].state == CLIENT_FREE)
				return &h->clients[i];
	return shed_candidate(h, now);
}

/*
 * Take new connections while there is room. Overload is never answered:
 * a 503 would read as "not live" to a probe. At the cap a new connection
 * takes the slot of the oldest client still sending its head (closed
 * without an answer); when there is none, the rest wait in the listen
 * backlog until a slot frees: a busy server may be slow, never wrong.
 */
static void accept_clients(struct httpd *h)
{
	for (int k = 0; k < ACCEPT_BATCH; k++) {
		int64_t now = util_mono_ms();
		struct client *c = slot_for_new(h, now);
		int fd;

		if (!c)
			return; /* the rest wait in the backlog */
		fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
			    errno == EPERM)
				continue; /* that connection is gone; try the next */
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the listen socket
			 * stays readable, so stop watching it for a while */
			h->accept_resume_ms = util_mono_ms() + ACCEPT_PAUSE_MS;
			return;
		}
		client_close(h, c); /* a shed candidate; no-op on a free slot */
		c->fd = fd;
		c->accepted_ms = now;
		c->state = CLIENT_READING;
		c->deadline_ms = now + h->timeout_ms;
		c->in_len = c->out_len = c->out_off = 0;
		h->nclients++;
	}
}

/* Answer 408 to heads not in yet; close writers and lingerers out of time. */
static void expire_clients(struct httpd *h, int64_t now)
{
	for (int i = 0; i < h->max_clients; i++) {
		struct client *c = &h->clients[i];
		struct http_request req;

		if (c->state == CLIENT_FREE || now < c->deadline_ms)
			continue;
		if (c->state == CLIENT_READING) {
			/* a HEAD still gets no body, even a 408 */
			http_parse_request(c->in, c->in_len, &req);
			answer_error(c, 408, req.method == HTTP_METHOD_HEAD);
			c->state = CLIENT_WRITING;
			c->deadline_ms = now + h->timeout_ms;
			c->out_off = 0;
			client_write(h, c);
		} else {
			client_close(h, c);
		}
	}
}

/* When the listen socket may be watched again: after an accept pause,
 * and at the cap once a reader becomes a shed candidate (INT64_MAX: when
 * a slot frees). At most `now` when it may be watched now. */
static int64_t listen_resume_ms(const struct httpd *h, int64_t now)
{
	if (now < h->accept_resume_ms)
		return h->accept_resume_ms;
	if (h->nclients < h->max_clients)
		return now;
	return next_shed_ms(h);
}

/* Fill h->pfds for this turn: the self-pipe, the listen socket when
 * listening, then the clients from index `first`. Returns their number and
 * sets the poll timeout to the nearest deadline. */
static nfds_t build_pollset(struct httpd *h, int64_t resume_ms, int64_t now, int *timeout)
{
	int64_t wait = POLL_MAX_MS;
	bool listening = now >= resume_ms;
	nfds_t n = 0, first = listening ? 2 : 1;

	h->pfds[n++] = (struct pollfd){ .fd = h->wake[0], .events = POLLIN };
	if (listening)
		h->pfds[n++] = (struct pollfd){ .fd = h->lfd, .events = POLLIN };
	else if (resume_ms - now < wait)
		wait = resume_ms - now;
	for (int i = 0; i < h->max_clients; i++) {
		struct client *c = &h->clients[i];

		if (c->state == CLIENT_FREE)
			continue;
		h->pfd_client[n - first] = i;
		h->pfds[n++] = (struct pollfd){
			.fd = c->fd,
			.events = c->state == CLIENT_WRITING ? POLLOUT : POLLIN,
		};
		if (c->deadline_ms - now < wait)
			wait = c->deadline_ms - now;
	}
	*timeout = wait < 0 ? 0 : (int)wait;
	return n;
}

static void *httpd_main(void *arg)
{
	struct httpd *h = arg;

	while (!atomic_load(&h->stopping)) {
		int64_t now = util_mono_ms(), resume;
		int timeout, rc;
		nfds_t n, first;
		bool listening;

		expire_clients(h, now);
		resume = listen_resume_ms(h, now);
		listening = now >= resume;
		n = build_pollset(h, resume, now, &timeout);
		rc = poll(h->pfds, n, timeout);
		if (rc < 0) {
			if (errno != EINTR) {
				/* ENOMEM: nothing to do but wait a little */
				struct timespec ts = { 0, 10 * 1000 * 1000 };
				nanosleep(&ts, NULL);
			}
			continue;
		}
		if (h->pfds[0].revents)
			break;
		first = listening ? 2 : 1;
		for (nfds_t k = first; k < n; k++) {
			struct client *c = &h->clients[h->pfd_client[k - first]];

			if (!h->pfds[k].revents)
				continue;
			if (c->state == CLIENT_READING)
				client_read(h, c);
			else if (c->state == CLIENT_WRITING)
				client_write(h, c);
			else if (c->state == CLIENT_LINGERING)
				client_drain(h, c);
		}
		if (listening && h->pfds[1].revents)
			accept_clients(h);
	}
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------- */

/* Close and free everything h holds (the thread is not running). */
static void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	for (int i = 0; h->clients && i < h->max_clients; i++)
		client_close(h, &h->clients[i]);
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->wake[0] >= 0)
		close(h->wake[0]);
	if (h->wake[1] >= 0)
		close(h->wake[1]);
	free(h->clients);
	free(h->pfds);
	free(h->pfd_client);
	free(h);
}

struct httpd *httpd_start(const struct httpd_options *opt, http_handler_fn fn, void *arg, char *err,
                          size_t errlen)
{
	static const int sync_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT };
	struct httpd *h;
	sigset_t block, saved;
	int rc;

	if (!opt || !opt->listen || !fn || opt->max_clients < 0 || opt->read_timeout_ms < 0) {
		snprintf(err, errlen, "httpd_start: invalid options");
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->lfd = h->wake[0] = h->wake[1] = -1;
	h->fn = fn;
	h->arg = arg;
	h->max_clients = opt->max_clients ? opt->max_clients : DEFAULT_MAX_CLIENTS;
	h->timeout_ms = opt->read_timeout_ms ? opt->read_timeout_ms : DEFAULT_TIMEOUT_MS;
	atomic_init(&h->stopping, false);
	h->clients = calloc((size_t)h->max_clients, sizeof(*h->clients));
	h->pfds = calloc((size_t)h->max_clients + 2, sizeof(*h->pfds));
	h->pfd_client = calloc((size_t)h->max_clients, sizeof(*h->pfd_client));
	if (!h->clients || !h->pfds || !h->pfd_client) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < h->max_clients; i++)
		h->clients[i].fd = -1;
	h->lfd = listener_open(opt->listen, &h->port, err, errlen);
	if (h->lfd < 0)
		goto fail;
	if (pipe2(h->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "cannot create the HTTP wake-up pipe: %s", strerror(errno));
		goto fail;
	}
	/* The thread takes no asynchronous signal: they belong to the main
	 * loop, whose poll they must interrupt. Faults stay deliverable. */
	sigfillset(&block);
	for (size_t k = 0; k < sizeof(sync_signals) / sizeof(sync_signals[0]); k++)
		sigdelset(&block, sync_signals[k]);
	pthread_sigmask(SIG_SETMASK, &block, &saved);
	rc = pthread_create(&h->thread, NULL, httpd_main, h);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the HTTP thread: %s", strerror(rc));
		goto fail;
	}
	return h;
fail:
	httpd_free(h);
	return NULL;
}

int httpd_port(const struct httpd *h)
{
	return h->port;
}

void httpd_stop(struct httpd *h)
{
	char b = 1;

	if (!h)
		return;
	atomic_store(&h->stopping, true);
	/* the pipe is empty, so this cannot block or fill; the flag covers a
	 * failed write at the next turn (POLL_MAX_MS at most) */
	while (write(h->wake[1], &b, 1) < 0 && errno == EINTR)
		;
	pthread_join(h->thread, NULL);
	httpd_free(h);
}
