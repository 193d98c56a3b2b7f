/*
 * conf_int.h -- what the files of the configuration module share
 * (conf.c reads it, conf_text.c lexes the file, conf_values.c checks
 * value syntaxes, conf_show.c renders and merges): the key table's types,
 * and the file lexer's results. Not for other modules: they use conf.h.
 */
#ifndef PGEVENTD_CONF_INT_H
#define PGEVENTD_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libconfig.h>

#include "conf.h"

enum cfg_type {
	CFG_INT,   /* an int field */
	CFG_LLONG, /* an integer key read into a long long field (the backoffs) */
	CFG_BOOL,
	CFG_DOUBLE,
	CFG_STRING,
	CFG_ENUM,
	CFG_STRLIST,
	CFG_INTLIST,
	CFG_DURATION, /* "30d", "1h30m", "500ms" into long long ms; "" = 0 (off) */
};

enum cfg_flags {
	CFG_RELOAD = 1 << 0,   /* SIGHUP applies it at once */
	CFG_SECRET = 1 << 1,   /* never shown: rendered as "***" */
	CFG_CONNINFO = 1 << 2, /* shown with its password redacted */
};

struct cfg_key {
	const char *path;
	enum cfg_type type;
	size_t offset;
	long long idef;           /* CFG_INT, CFG_BOOL, CFG_ENUM */
	double ddef;              /* CFG_DOUBLE */
	const char *sdef;         /* CFG_STRING (NULL allowed), CFG_STRLIST (comma-separated) */
	double min, max;          /* CFG_INT, CFG_DOUBLE */
	const char *const *names; /* CFG_ENUM */
	unsigned flags;
	const char *help;
};

#define OFF(field) offsetof(struct config, field)

/* Every key pgeventd reads (conf.c), and how many. */
extern const struct cfg_key conf_keys[];
extern const size_t conf_nkeys;

static inline void *conf_field(struct config *cfg, const struct cfg_key *k)
{
	return (char *)cfg + k->offset;
}

static inline const void *conf_cfield(const struct config *cfg, const struct cfg_key *k)
{
	return (const char *)cfg + k->offset;
}

/* A string list's values (conf.c). */
void conf_strlist_release(struct strlist *l);
bool conf_strlist_push(struct strlist *l, const char *s);

/* ---- the file as written (conf_text.c) ---------------------------------- */

/*
 * libconfig 1.5 reads an integer without an L suffix into an int and
 * wraps it (4294967297 becomes 1), so range checks on its value can be
 * fooled. scan_file() therefore walks the text itself, recording each
 * integer literal under the path of the key it belongs to, and the
 * brackets still open at the end of the file (for a syntax error there).
 * It is a lexer, not a parser (libconfig still decides what is valid).
 * Where it cannot follow the text (an @include, an unterminated comment)
 * it sets scan.lost: then no bracket hint is given, and a key whose
 * literal it did not record falls back to libconfig's value.
 */
struct literal {
	char path[128];   /* "relay.backoff.schedule_ms" */
	int elem;         /* -1: the key's value; else the index in its list */
	const char *text; /* into the file's text, not terminated */
	size_t len;
};

#define SCAN_DEPTH 32

struct scan_frame {
	char open;      /* '{', '[' or '(' */
	int line;       /* where it was opened */
	char path[128]; /* the group or list it opens; "" when not a key */
	int elem;       /* next element index of a list */
};

struct scan {
	struct literal *lits; /* owned */
	int n, cap;
	struct scan_frame stack[SCAN_DEPTH];
	int depth;
	bool lost; /* something the scan does not follow: no hints from it */
};

/* Read the file at `path` into memory (a regular file, at most 1 MiB, no
 * NUL), without blocking on a FIFO: NULL with a message naming the path
 * and what is wrong. The caller frees the text. */
char *conf_read_file(const char *path, char *err, size_t errlen);

/* Lex `text` into `sc` (which the caller zeroes and frees with
 * conf_scan_release). */
void conf_scan_file(struct scan *sc, const char *text);
void conf_scan_release(struct scan *sc);

/* The integer literal written for `path` (elem -1: the key itself; else its
 * list element), or NULL; its value, false if it does not fit. */
const struct literal *conf_find_literal(const struct scan *sc, const char *path, int elem);
bool conf_literal_value(const struct literal *lit, long long *v);

/* libconfig's parse error, once, with where a bracket left open was
 * opened when the scan can tell. */
void conf_syntax_error(const config_t *lc, const struct scan *sc, const char *path, char *err,
                       size_t errlen);

/* ---- value syntaxes (conf_values.c) --------------------------------------- */

/* Whether `spec` is a health.listen address ("", ":port", "*:port",
 * "host:port", "[ipv6]:port"); if not, why. */
bool conf_listen_address_ok(const char *spec, char *why, size_t len);

/* ---- routes (conf_routes.c) --------------------------------------------- */

/* Read the `routes` setting `s` into cfg->routes; "FILE:LINE: routes[N].key:
 * what is wrong" in err when it is not a list of { events; call; }. */
bool conf_routes_read(struct config *cfg, const config_setting_t *s, const char *file, char *err,
                      size_t errlen);

#endif
