/* cli.h -- what the operator commands share: connect, run a statement, print what it returned. */
#ifndef PGEVENTD_CLI_H
#define PGEVENTD_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <getopt.h>
#include <sysexits.h> /* the exit codes the commands return */
#include <jansson.h>
#include <libpq-fe.h>

#include "conf.h"

/* A SQLSTATE, five characters and the terminator. */
#define CLI_SQLSTATE_LEN 6

/*
 * Connect with the configured connection string, naming the session
 * `app_name`. On failure prints "pgeventd: cannot connect to the database:
 * ..." and returns NULL: the caller exits EX_UNAVAILABLE.
 */
PGconn *cli_connect(const struct config *cfg, const char *app_name);

/*
 * Settings the DBA commands rely on: every statement is cancelled after
 * `statement_timeout_ms` (0: never), dates come in ISO style whatever the
 * server's default and text in UTF-8, so that cli_value_json and
 * cli_print_table can read them. Prints the error and returns false.
 */
bool cli_session(PGconn *conn, int statement_timeout_ms);

/* Run one parameterised statement; on failure prints the error and returns NULL. */
PGresult *cli_exec(PGconn *conn, const char *sql, int n, const char *const *params);

/*
 * Like cli_exec but prints nothing: on failure returns NULL with the
 * message in `err` and the SQLSTATE in `sqlstate` ("" when there is none,
 * e.g. a lost connection), so the caller can tell a bad value (class 22)
 * or a timeout (57014) from the rest.
 */
PGresult *cli_try_exec(PGconn *conn, const char *sql, int n, const char *const *params,
                       char sqlstate[CLI_SQLSTATE_LEN], char *err, size_t errlen);

/* Print a result as an aligned table or as a JSON array of objects whose
 * values are all strings (the relay commands' format). */
void cli_print_result(const PGresult *res, bool json);

/*
 * Print a result for people: aligned columns, timestamps to the second,
 * NULL as "-", line breaks as spaces and cells longer than 60 characters
 * cut with "...". "(none)" when there are no rows.
 */
void cli_print_table(const PGresult *res);

/*
 * One value as JSON by its column's type: integers, booleans and floats as
 * numbers, json/jsonb as the document itself, timestamptz as RFC 3339 text,
 * NULL as null, anything else as a string. New reference.
 */
json_t *cli_value_json(const PGresult *res, int row, int col);

/* One row as an object {column: value}, or every row as an array of them. New references. */
json_t *cli_row_json(const PGresult *res, int row);
json_t *cli_rows_json(const PGresult *res);

/* Write a JSON document to stdout, indented, with a final newline. */
void cli_print_json(const json_t *doc);

/*
 * getopt_long with pgeventd's messages. Set optind = 0 before the first
 * call: glibc keeps main()'s "+" ordering across optind = 1, so options
 * after an operand ("show ID --json") would be taken as operands. Returns
 * the option, -1 at the end, or '?' after printing "pgeventd CMD: unknown
 * option X" or "pgeventd CMD: option X needs a value".
 */
int cli_getopt(int argc, char **argv, const struct option *opts, const char *cmd);

/*
 * Whether `s` is a uuid as PostgreSQL's uuid type reads it (32 hex digits,
 * a '-' allowed after any group of four, optionally in braces), so that a
 * malformed id is refused before connecting: exit 64, not 69.
 */
bool cli_uuid_ok(const char *s);

/* Whether `s` is a whole decimal number from `min` to `max`. */
bool cli_int_ok(const char *s, long min, long max);

/*
 * Replace every value of column `column` of `res` with its redact_url
 * form (no password), so a URL is never printed with its userinfo
 * password. False (nothing printed) when out of memory; a result without
 * that column is left alone.
 */
bool cli_redact_urls(PGresult *res, const char *column);

/* Print "usage: pgeventd [-c FILE] USAGE" on stderr; returns EX_USAGE. */
int cli_usage(const char *usage);

/* "pgeventd CMD: unexpected argument X" and the usage: for stray operands. */
int cli_extra_argument(const char *cmd, const char *arg, const char *usage);

/* Connect and set the session up for a command (cli_session with
 * `timeout_ms`); NULL (already told) means exit `*rc`. */
PGconn *cli_connect_for(const struct config *cfg, const char *app_name, int timeout_ms, int *rc);

/* A JSON integer's value (0 when it is not one). */
long long cli_int_of(const json_t *v);

#endif
