/*
 * routes.c -- running SQL routes: look their functions up safely, call
 * them for one event or for a run of events, and map their errors to
 * outcomes by SQLSTATE. (conf_routes.c reads them from the file.)
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dispatch.h"
#include "telemetry.h"
#include "util.h"

#define GROUP_SAVEPOINT "pgeventd_route_group"

/*
 * One route's function, looked up by the configured name given as a
 * parameter: to_regprocedure() parses "<name>(<events row type>)" as a
 * signature and never runs anything. The other columns say what is wrong
 * when it is not usable, and the functions of that name that do exist.
 */
static const char resolve_sql[] =
    "WITH t AS (SELECT format_type(c.reltype, NULL) AS rowtype"
    "           FROM pg_class c WHERE c.oid = to_regclass('events')),"
    " f AS (SELECT to_regprocedure($1 || '(' || (SELECT rowtype FROM t) || ')')::oid AS oid),"
    " id AS (SELECT parse_ident($1) AS parts)"
    " SELECT (SELECT rowtype FROM t), f.oid, n.nspname, p.proname, p.prokind, p.proretset,"
    "  CASE WHEN f.oid IS NOT NULL THEN has_function_privilege(f.oid, 'EXECUTE') END,"
    "  CASE WHEN f.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END,"
    "  current_user, f.oid::regprocedure::text,"
    "  (SELECT string_agg(q.oid::regprocedure::text, ', ' ORDER BY q.oid)"
    "   FROM pg_proc q JOIN pg_namespace qn ON qn.oid = q.pronamespace, id"
    "   WHERE q.proname = id.parts[array_length(id.parts, 1)]"
    "     AND CASE WHEN array_length(id.parts, 1) = 1 THEN pg_function_is_visible(q.oid)"
    "              ELSE qn.nspname = id.parts[1] END)"
    " FROM f LEFT JOIN pg_proc p ON p.oid = f.oid"
    " LEFT JOIN pg_namespace n ON n.oid = p.pronamespace";

enum {
	R_ROWTYPE,
	R_OID,
	R_NSP,
	R_NAME,
	R_KIND,
	R_RETSET,
	R_EXEC,
	R_USAGE,
	R_USER,
	R_SIG,
	R_OTHERS
};

/* Build the two statements that call the function `ident` (quoted). */
static bool build_sql(struct route *r, const char *ident)
{
	free(r->one_sql);
	free(r->group_sql);
	r->group_sql = NULL;
	/* "IS NULL" uses the result, so the call is never planned away; the
	 * LATERAL subquery (OFFSET 0 keeps it one) runs once per id in the
	 * array's order, the order of the claim. */
	if (asprintf(&r->one_sql, "SELECT %s(e) IS NULL FROM events e WHERE e.id = $1", ident) <
	    0) {
		r->one_sql = NULL;
		return false;
	}
	if (asprintf(
	        &r->group_sql,
	        "SELECT count(x.r IS NULL) FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)"
	        " CROSS JOIN LATERAL (SELECT %s(e) AS r FROM events e WHERE e.id = u.id"
	        " OFFSET 0) x",
	        ident) < 0) {
		r->group_sql = NULL;
		return false;
	}
	return true;
}

static bool resolve_one(PGconn *conn, struct route *r, const char *file, char *err, size_t errlen)
{
	const char *p[1] = { r->call };
	PGresult *res = PQexecParams(conn, resolve_sql, 1, NULL, p, NULL, NULL, 0);
	char dberr[DB_ERRLEN], *nsp = NULL, *fn = NULL, *ident = NULL;
	bool ok = false;
	int n;

	n = snprintf(err, errlen, "%s:%d: routes[%d].call: %s: ", file, r->line, r->index, r->call);
	if (n < 0 || (size_t)n >= errlen)
		n = 0;
	err += n;
	errlen -= (size_t)n;
	if (!db_ok(conn, res, PGRES_TUPLES_OK, dberr, sizeof(dberr))) {
		snprintf(err, errlen, "cannot look the function up: %s", dberr);
		goto out;
	}
	if (PQgetisnull(res, 0, R_ROWTYPE)) {
		snprintf(err, errlen, "table events not found (run `pgeventd migrate`)");
		goto out;
	}
	const char *rowtype = PQgetvalue(res, 0, R_ROWTYPE);
	if (PQgetisnull(res, 0, R_OID)) {
		if (!PQgetisnull(res, 0, R_OTHERS))
			snprintf(
			    err, errlen,
			    "wrong signature: a routed function takes one argument of type %s, "
			    "found only %s",
			    rowtype, PQgetvalue(res, 0, R_OTHERS));
		else
			snprintf(err, errlen,
			         "function %s(%s) does not exist (or its schema is not "
			         "on the search_path)",
			         r->call, rowtype);
		goto out;
	}
	const char *kind = PQgetvalue(res, 0, R_KIND);
	if (strcmp(kind, "f") != 0) {
		snprintf(err, errlen, "%s is a %s, not a function", r->call,
		         strcmp(kind, "p") == 0 ? "procedure" : "aggregate or window function");
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, R_RETSET), "t") == 0) {
		snprintf(err, errlen, "returns a set (SETOF); a routed function returns void");
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, R_EXEC), "t") != 0 ||
	    strcmp(PQgetvalue(res, 0, R_USAGE), "t") != 0) {
		snprintf(
		    err, errlen,
		    "role %s may not execute it (GRANT USAGE ON SCHEMA %s and GRANT EXECUTE ON "
		    "FUNCTION %s.%s(%s) TO %s)",
		    PQgetvalue(res, 0, R_USER), PQgetvalue(res, 0, R_NSP),
		    PQgetvalue(res, 0, R_NSP), PQgetvalue(res, 0, R_NAME), rowtype,
		    PQgetvalue(res, 0, R_USER));
		goto out;
	}
	nsp =
	    PQescapeIdentifier(conn, PQgetvalue(res, 0, R_NSP), strlen(PQgetvalue(res, 0, R_NSP)));
	fn = PQescapeIdentifier(conn, PQgetvalue(res, 0, R_NAME),
	                        strlen(PQgetvalue(res, 0, R_NAME)));
	if (!nsp || !fn || asprintf(&ident, "%s.%s", nsp, fn) < 0) {
		ident = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	free(r->signature);
	r->signature = strdup(PQgetvalue(res, 0, R_SIG));
	if (!r->signature || !build_sql(r, ident)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r->entry.fn = routes_call_one;
	ok = true;
out:
	PQfreemem(nsp);
	PQfreemem(fn);
	free(ident);
	PQclear(res);
	return ok;
}

bool routes_resolve(PGconn *conn, struct route_list *l, const char *file, char *err, size_t errlen)
{
	for (int i = 0; i < l->n; i++)
		if (!resolve_one(conn, &l->items[i], file ? file : "(config)", err, errlen))
			return false;
	return true;
}

enum handler_result routes_outcome(const char *state)
{
	static const char *const transient[] = {
		"40001", /* serialization_failure */
		"40P01", /* deadlock_detected */
		"55P03", /* lock_not_available (lock_timeout: the handler time limit) */
		"57014", /* query_canceled (statement_timeout: the handler time limit) */
		ROUTES_RETRY_SQLSTATE,
		/* The deployment, not the event: a migration that drops and
		 * recreates a route's function, or its grants, or the search
		 * path, would otherwise dead-letter every event routed meanwhile
		 * (and park every ordered key). */
		"42883", /* undefined_function */
		"42501", /* insufficient_privilege */
		"3F000", /* invalid_schema_name */
		"42P01", /* undefined_table */
		"42703", /* undefined_column: a column renamed or dropped under it */
		"XX000", /* internal_error */
	};

	if (!state)
		return HANDLER_RETRY; /* no SQLSTATE: the connection, not the function */
	if (strncmp(state, "53", 2) == 0 || strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "58", 2) == 0)
		return HANDLER_RETRY; /* insufficient resources, connection, system errors */
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		if (strcmp(state, transient[i]) == 0)
			return HANDLER_RETRY;
	return HANDLER_FAIL;
}

void routes_error_text(const PGresult *res, char *buf, size_t len)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

	snprintf(buf, len, "SQLSTATE %s: %s%s%s%s%s%s", state ? state : "?????",
	         msg ? msg : PQresultErrorMessage(res), detail || hint ? " (" : "",
	         detail ? "detail: " : "", detail ? detail : "",
	         hint ? (detail ? "; hint: " : "hint: ") : "", hint ? hint : "");
	if (detail || hint) {
		size_t n = strlen(buf);

		if (n + 1 < len) {
			buf[n] = ')';
			buf[n + 1] = '\0';
		}
	}
	/* One line: a message may hold newlines (a detail often does). */
	for (char *c = buf; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
}

enum handler_result routes_call_one(struct handler_ctx *ctx, const struct event *ev)
{
	const struct route *r = (const struct route *)ctx->entry;
	const char *p[1] = { ev->id };
	PGresult *failed = NULL, *res;
	enum handler_result out;
	char why[DISPATCH_ERROR_MAX - 128];

	res = dispatch_exec(ctx, r->one_sql, 1, p, &failed);
	if (res) {
		PQclear(res);
		return HANDLER_OK;
	}
	if (!failed)
		return HANDLER_RETRY; /* ctx->error says why (the savepoint, the time limit) */
	out = routes_outcome(PQresultErrorField(failed, PG_DIAG_SQLSTATE));
	routes_error_text(failed, why, sizeof(why));
	if (ctx->timed_out)
		snprintf(ctx->error, sizeof(ctx->error),
		         "handler time limit exceeded (handler_timeout_ms = %d): function %s: %s",
		         ctx->timeout_ms, r->call, why);
	else
		snprintf(ctx->error, sizeof(ctx->error), "function %s: %s", r->call, why);
	PQclear(failed);
	return out;
}

bool routes_call_group(PGconn *conn, const struct route *r, const char *ids, bool *wrote)
{
	const char *p[1] = { ids };
	struct db_stmt st[2] = {
		{ NULL, "SAVEPOINT " GROUP_SAVEPOINT, 0, NULL, PGRES_COMMAND_OK },
		{ NULL, r->group_sql, 1, p, PGRES_TUPLES_OK },
	};
	PGresult *res[2];
	char err[DB_ERRLEN];
	bool ok;

	ok = db_pipeline(conn, st, 2, res, err, sizeof(err));
	*wrote = res[0] && PQresultStatus(res[0]) == PGRES_COMMAND_OK;
	PQclear(res[0]);
	PQclear(res[1]);
	if (ok || db_broken(conn))
		return ok;
	if (*wrote) {
		/* Undo the group whole; its subtransaction is gone with it. */
		if (db_exec(conn, "ROLLBACK TO SAVEPOINT " GROUP_SAVEPOINT, err, sizeof(err)))
			db_exec(conn, "RELEASE SAVEPOINT " GROUP_SAVEPOINT, err, sizeof(err));
		*wrote = false;
	}
	return false;
}

bool routes_same(const struct route_list *a, const struct route_list *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++) {
		const struct route *x = &a->items[i], *y = &b->items[i];

		if (strcmp(x->call, y->call) != 0 || x->events.n != y->events.n)
			return false;
		for (int k = 0; k < x->events.n; k++)
			if (strcmp(x->events.items[k], y->events.items[k]) != 0)
				return false;
	}
	return true;
}

void routes_telemetry(const struct route_list *old, const struct route_list *cur)
{
	for (int i = 0; old && i < old->n; i++)
		for (int k = 0; k < old->items[i].events.n; k++)
			telemetry_sql_route(old->items[i].events.items[k], old->items[i].call,
			                    false);
	for (int i = 0; i < cur->n; i++)
		for (int k = 0; k < cur->items[i].events.n; k++)
			telemetry_sql_route(cur->items[i].events.items[k], cur->items[i].call,
			                    true);
}
