/* log.c -- structured logging to stderr, logfmt or JSON lines. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static _Atomic int log_threshold = LOG_INFO;
static _Atomic int log_fmt = LOG_FORMAT_LOGFMT;

const char *const log_level_names[] = { "debug", "info", "notice", "warning", "error", NULL };
const char *const log_format_names[] = { "logfmt", "json", NULL };

void log_configure(enum log_level level, enum log_format format)
{
	atomic_store(&log_threshold, (int)level);
	atomic_store(&log_fmt, (int)format);
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_threshold);
}

/* A line under construction: on the stack up to its size, then on the heap. */
struct line {
	char *p; /* stack or heap; heap when != stack */
	size_t len;
	size_t cap;
	bool oom; /* an allocation failed: the line is cut short */
	char stack[1024];
};

static void line_init(struct line *l)
{
	l->p = l->stack;
	l->len = 0;
	l->cap = sizeof(l->stack);
	l->oom = false;
}

static void line_release(struct line *l)
{
	if (l->p != l->stack)
		free(l->p);
}

static bool line_reserve(struct line *l, size_t more)
{
	size_t cap = l->cap;
	char *np;

	if (l->len + more <= l->cap)
		return true;
	if (l->oom)
		return false;
	while (cap < l->len + more)
		cap *= 2;
	np = l->p == l->stack ? malloc(cap) : realloc(l->p, cap);
	if (!np) {
		l->oom = true;
		return false;
	}
	if (l->p == l->stack)
		memcpy(np, l->stack, l->len);
	l->p = np;
	l->cap = cap;
	return true;
}

static void line_put(struct line *l, const char *s, size_t n)
{
	if (!line_reserve(l, n))
		return;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* A logfmt value needs quotes when it is empty or holds a space, quote,
 * equals sign or control character. */
static bool needs_quotes(const char *v)
{
	if (*v == '\0')
		return true;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
			return true;
	return false;
}

static void put_logfmt_value(struct line *l, const char *v)
{
	char esc[8];

	if (!needs_quotes(v)) {
		line_puts(l, v);
		return;
	}
	line_put(l, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"':
			line_put(l, "\\\"", 2);
			break;
		case '\\':
			line_put(l, "\\\\", 2);
			break;
		case '\n':
			line_put(l, "\\n", 2);
			break;
		case '\t':
			line_put(l, "\\t", 2);
			break;
		case '\r':
			line_put(l, "\\r", 2);
			break;
		default:
			if (*p < ' ' || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\x%02x", *p);
				line_puts(l, esc);
			} else {
				line_put(l, (const char *)p, 1);
			}
		}
	}
	line_put(l, "\"", 1);
}

/* "2026-12-01T10:00:00.123Z". The part up to the second is formatted once
 * per second per thread: gmtime and strftime cost more than the rest of a
 * line. */
static void format_time(char *buf, size_t len)
{
	static _Thread_local time_t cached_sec = -1;
	static _Thread_local char cached[24];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;

		gmtime_r(&ts.tv_sec, &tm);
		if (strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
			cached[0] = '\0';
		cached_sec = ts.tv_sec;
	}
	snprintf(buf, len, "%s.%03ldZ", cached, ts.tv_nsec / 1000000);
}

/* Serialises the writes of all threads: a write longer than the pipe's
 * atomic size (journald's stream) could otherwise interleave with another
 * thread's. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* Write whole lines with one write(2) (more only if the kernel takes them
 * in parts), so that no other line, and no crash after the call, leaves
 * half of one. */
static void write_lines(const char *p, size_t n)
{
	pthread_mutex_lock(&write_lock);
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere to report it */
		p += w;
		n -= (size_t)w;
	}
	pthread_mutex_unlock(&write_lock);
}

/* Lines held back by log_hold(), per thread: written together (still
 * whole) when they fill HOLD_MAX or at log_release(). */
#define HOLD_MAX 65536
static _Thread_local char *held;
static _Thread_local size_t held_len, held_cap;
static _Thread_local int hold_depth;

static void flush_held(void)
{
	if (held_len > 0)
		write_lines(held, held_len);
	held_len = 0;
}

/* One finished line: written now, or held. */
static void put_line(const char *p, size_t n)
{
	if (hold_depth == 0) {
		write_lines(p, n);
		return;
	}
	if (held_len + n > HOLD_MAX)
		flush_held();
	if (held_len + n > held_cap) {
		size_t cap = held_cap ? held_cap : 4096;
		char *nb;

		while (cap < held_len + n)
			cap *= 2;
		nb = realloc(held, cap);
		if (!nb) {
			flush_held();
			write_lines(p, n);
			return;
		}
		held = nb;
		held_cap = cap;
	}
	memcpy(held + held_len, p, n);
	held_len += n;
}

void log_hold(void)
{
	hold_depth++;
}

void log_release(void)
{
	if (hold_depth > 0 && --hold_depth == 0) {
		flush_held();
		if (held_cap > HOLD_MAX) {
			free(held);
			held = NULL;
			held_cap = 0;
		}
	}
}

void log_thread_done(void)
{
	flush_held();
	free(held);
	held = NULL;
	held_len = held_cap = 0;
	hold_depth = 0;
}

static void emit(enum log_level level, const char *msg, va_list ap)
{
	char ts[40];
	const char *k, *v;
	struct line l;

	format_time(ts, sizeof(ts));
	if (atomic_load(&log_fmt) == LOG_FORMAT_JSON) {
		json_t *o = json_object();
		char *text;

		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "level", json_string(log_level_names[level]));
		json_object_set_new(o, "msg", json_string(msg));
		while ((k = va_arg(ap, const char *)) != NULL) {
			v = va_arg(ap, const char *);
			if (!v)
				continue;
			/* json_string rejects invalid UTF-8; keep the field anyway */
			json_t *s = json_string(v);
			json_object_set_new(o, k, s ? s : json_string("<invalid utf-8>"));
		}
		text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (text) {
			size_t n = strlen(text);

			line_init(&l);
			line_put(&l, text, n);
			line_put(&l, "\n", 1);
			if (!l.oom)
				put_line(l.p, l.len);
			line_release(&l);
			free(text);
		}
		return;
	}
	line_init(&l);
	line_puts(&l, "ts=");
	line_puts(&l, ts);
	line_puts(&l, " level=");
	line_puts(&l, log_level_names[level]);
	line_puts(&l, " msg=");
	put_logfmt_value(&l, msg);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		if (!v)
			continue;
		line_put(&l, " ", 1);
		line_puts(&l, k);
		line_put(&l, "=", 1);
		put_logfmt_value(&l, v);
	}
	line_put(&l, "\n", 1);
	if (!l.oom)
		put_line(l.p, l.len);
	line_release(&l);
}

void log_kv(enum log_level level, const char *msg, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, msg);
	emit(level, msg, ap);
	va_end(ap);
}
