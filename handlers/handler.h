/*
 * handler.h -- the API between pgeventd's claim loop and event handlers.
 *
 * A handler is a function that receives one claimed event and returns what
 * happened to it. It runs inside the batch transaction of the worker that
 * claimed the event: every statement it issues through handler_exec()
 * commits exactly when the event is marked processed, and is rolled back
 * (to a savepoint taken before its first statement) when it returns
 * HANDLER_RETRY or HANDLER_FAIL.
 *
 * Rules for handlers:
 *   - Be quick and local to the database. The batch holds row locks while a
 *     handler runs; anything slow (HTTP, sleeping) belongs in the relay, to
 *     which a handler hands work by inserting rows.
 *   - Use handler_exec() for SQL, always with parameters for outside data.
 *     Never COMMIT, ROLLBACK or use the connection behind the API's back.
 *   - Return HANDLER_FAIL for input that can never succeed (a payload the
 *     handler cannot use) and HANDLER_RETRY for what may succeed later (a
 *     row that has not arrived yet, a lock timeout). Both need a message set
 *     with handler_error(): it lands in events.last_error and, when the event
 *     is dead-lettered, in event_dead_letters.error_message. Say what is
 *     wrong and with which field ("rating must be an integer 1..5, got 9").
 *   - Never put secrets in messages.
 *
 * How to add a handler:
 *   1. Write handlers/<name>.c with a function of type handler_fn.
 *   2. Add a row to the table of its pack (handlers/registry.c for the core
 *      pack, or handlers/<pack>/<pack>.c) with HANDLER(type, fn, flags, desc).
 *   3. If it needs tables, add a numbered migration to the pack's migrations
 *      directory (migrations/ for the core pack).
 *   4. Add the .c file to src_libpgeventd_a_SOURCES in Makefile.am and a test
 *      under tests/.
 *
 * How to add a pack (a set of handlers with its own tables):
 *   handlers/<pack>/<pack>.c defines `const struct handler_pack
 *   <pack>_pack`, its migrations live in handlers/<pack>/migrations/, and
 *   one line in handlers/packs.c lists it. Operators enable it with
 *   `packs = ["<pack>"]`; until then its migrations are not applied and its
 *   event types are not routed.
 */
#ifndef PGEVENTD_HANDLER_H
#define PGEVENTD_HANDLER_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

/* What a handler says happened to an event. */
enum handler_result {
	HANDLER_OK = 0, /* done: the event is marked processed */
	HANDLER_RETRY,  /* transient: try again after the backoff delay */
	HANDLER_FAIL,   /* permanent: dead-letter the event now */
};

/* The claimed event, read-only. Every pointer is owned by the claim loop
 * and valid only during the handler call. */
struct event {
	const char *id;             /* uuid, text form */
	const char *event_type;     /* never NULL */
	const char *aggregate_id;   /* uuid text, or NULL */
	const char *aggregate_type; /* or NULL */
	const json_t *payload; /* parsed payload (any JSON type) with HANDLER_F_JSON, else NULL */
	const char *payload_text; /* payload as PostgreSQL printed it, never NULL */
	const json_t *metadata;   /* parsed metadata with HANDLER_F_JSON, or NULL */
	const char *created_at;   /* timestamptz, text form */
	const char *created_by;   /* or NULL */
	int attempt;              /* 1 for the first attempt */
};

/* Opaque per-call context: the batch connection and the error buffer. */
struct handler_ctx;

typedef enum handler_result (*handler_fn)(struct handler_ctx *ctx, const struct event *ev);

/* Flags of a registry row. */
enum handler_flags {
	HANDLER_F_NONE = 0,
	/* The handler reads ev->payload and ev->metadata: the claim loop parses
	 * them first. jansson cannot hold every number jsonb can (integers
	 * beyond 64 bits, 1e400), so such an event is dead-lettered with a
	 * message naming the limit -- but only for handlers that asked. Without
	 * the flag the handler gets payload_text and nothing is parsed. */
	HANDLER_F_JSON = 1 << 0,
};

/* One row of a pack's registry table. */
struct handler_entry {
	const char *event_type; /* exact event type this row routes */
	handler_fn fn;
	unsigned flags;          /* enum handler_flags */
	const char *description; /* one line, shown in /health and --help */
	const char *name;        /* handler name recorded with dead letters */
};

#define HANDLER(type, fn, flags, desc)                                                             \
	{                                                                                          \
		(type), (fn), (flags), (desc), #fn                                                 \
	}

/* A migration embedded at build time (see build-aux/embed-sql.sh). */
struct migration {
	int version;      /* NNNN from the file name */
	const char *name; /* file name, e.g. "0001_events.sql" */
	const char *sql;  /* the file's contents */
};

/* A pack: registry rows plus the migrations that create their tables. */
struct handler_pack {
	const char *name; /* as written in `packs = [...]`; "core" is always on */
	const char *description;
	const struct handler_entry *handlers; /* ends with a row whose event_type is NULL */
	const struct migration *migrations;   /* ordered by version, ends with sql == NULL */
};

/* The packs linked into this binary, ending with NULL (handlers/packs.c;
 * test binaries link tests/test_packs.c instead, adding the test pack). */
extern const struct handler_pack *const handler_packs[];

/*
 * Run one SQL statement inside the event's transaction, with $1..$n
 * parameters given as text (NULL for SQL NULL). The first call takes a
 * savepoint so that a RETRY/FAIL undoes the handler's writes.
 *
 * Returns the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK), which the
 * caller must PQclear(). On error returns NULL with the server's message
 * already set as the handler's error: the handler should then return
 * HANDLER_RETRY (or HANDLER_FAIL when it knows the error is permanent),
 * and it must not run further statements.
 */
PGresult *handler_exec(struct handler_ctx *ctx, const char *sql, int nparams,
                       const char *const *params);

/* Set the message recorded for a RETRY or FAIL (printf-style; the latest
 * call wins). Returns HANDLER_FAIL so a validation can `return handler_error(...)`
 * -- use handler_retry() for the transient counterpart. */
enum handler_result handler_error(struct handler_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum handler_result handler_retry(struct handler_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "object", "array", "string", "number", "boolean" or "null": for messages
 * such as "rating must be an integer, got string". */
const char *handler_json_type(const json_t *j);

/* Characters (not bytes) of UTF-8 text, as PostgreSQL's varchar(n) counts
 * them: for checks such as "id must be at most 100 characters". */
size_t handler_text_length(const char *s);

/* Log a line at info level tagged with the event being handled. */
void handler_log(struct handler_ctx *ctx, const char *msg, const char *key, const char *value);

#endif
