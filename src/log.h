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

/*
 * Hold this thread's lines back until log_release() (calls nest), then
 * write them together: one write(2) for a batch's outcomes instead of one
 * per event. Lines stay whole and in order; another thread's lines go
 * between, never inside, them. log_thread_done() frees what a thread kept
 * (call it before the thread returns).
 */
void log_hold(void);
void log_release(void);
void log_thread_done(void);

/* The names of the levels and formats, indexed by the enums, NULL-ended
 * (the configuration's log.level and log.format take them). */
extern const char *const log_level_names[];
extern const char *const log_format_names[];

#endif
