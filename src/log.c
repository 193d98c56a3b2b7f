/* log.c -- structured logging to stderr, logfmt or JSON lines. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static _Atomic int log_threshold = LOG_INFO;
static _Atomic int log_fmt = LOG_FORMAT_LOGFMT;

static const char *const level_names[] = { "debug", "info", "notice", "warning", "error" };

void log_configure(enum log_level level, enum log_format format)
{
	atomic_store(&log_threshold, (int)level);
	atomic_store(&log_fmt, (int)format);
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_threshold);
}

const char *log_level_name(enum log_level level)
{
	return level_names[level];
}

bool log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

bool log_format_parse(const char *name, enum log_format *out)
{
	if (strcmp(name, "logfmt") == 0)
		*out = LOG_FORMAT_LOGFMT;
	else if (strcmp(name, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return false;
	return true;
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

static void put_logfmt_value(FILE *f, const char *v)
{
	if (!needs_quotes(v)) {
		fputs(v, f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < ' ' || *p == 0x7f)
				fprintf(f, "\\x%02x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void format_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(enum log_level level, const char *msg, va_list ap)
{
	char ts[40];
	const char *k, *v;

	format_time(ts, sizeof(ts));
	if (atomic_load(&log_fmt) == LOG_FORMAT_JSON) {
		json_t *o = json_object();
		char *line;

		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "level", json_string(level_names[level]));
		json_object_set_new(o, "msg", json_string(msg));
		while ((k = va_arg(ap, const char *)) != NULL) {
			v = va_arg(ap, const char *);
			if (!v)
				continue;
			/* json_string rejects invalid UTF-8; keep the field anyway */
			json_t *s = json_string(v);
			json_object_set_new(o, k, s ? s : json_string("<invalid utf-8>"));
		}
		line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (line) {
			flockfile(stderr);
			fputs(line, stderr);
			fputc('\n', stderr);
			funlockfile(stderr);
			free(line);
		}
		return;
	}
	flockfile(stderr);
	fprintf(stderr, "ts=%s level=%s msg=", ts, level_names[level]);
	put_logfmt_value(stderr, msg);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		if (!v)
			continue;
		fputc(' ', stderr);
		fputs(k, stderr);
		fputc('=', stderr);
		put_logfmt_value(stderr, v);
	}
	fputc('\n', stderr);
	funlockfile(stderr);
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

/* emit() needs a va_list of fields; this one is empty. */
static void emit_nofields(enum log_level level, const char *msg, ...)
{
	va_list ap;

	va_start(ap, msg);
	emit(level, msg, ap);
	va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	emit_nofields(level, buf, (const char *)NULL);
}
