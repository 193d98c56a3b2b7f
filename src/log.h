/*
 * log.h -- one-line structured logs on stderr (journald keeps them).
 *
 * Every line is a message plus key/value fields, written as logfmt
 * (`ts=... level=info msg="event handled" event_id=...`) or as one JSON
 * object per line. Lines from several threads never interleave.
 * Callers must not pass secrets as values: the logger cannot know them.
 */
#ifndef PGEVENTD_LOG_H
#define PGEVENTD_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERROR };
enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON };

/* Set the threshold and format; safe to call while other threads log
 * (a SIGHUP reload changes them at run time). */
void log_configure(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);

/*
 * Log `msg` with fields given as key, value string pairs ending with NULL:
 *   log_kv(LOG_INFO, "event handled", "event_id", id, "outcome", "ok", NULL);
 * A field whose value is NULL is left out of the line.
 */
void log_kv(enum log_level level, const char *msg, ...) __attribute__((sentinel));

/* Same as log_kv with a printf-formatted message and no fields. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Names for config parsing and display. */
bool log_level_parse(const char *name, enum log_level *out);
bool log_format_parse(const char *name, enum log_format *out);
const char *log_level_name(enum log_level level);

#endif
