/* migrate.c -- forward-only schema migrations, embedded at build time. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "migrate.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "db.h"
#include "handlers/handler.h"
#include "handlers/registry.h"
#include "log.h"

/* pg_advisory_lock key held while migrating (any constant unique to pgeventd). */
#define MIGRATE_LOCK_KEY "7067657600000001"

#define MIGRATE_MAX_PACKS 32

/* The packs `cfg` enables, core first, as the registry links them. */
static size_t enabled_packs(const struct config *cfg, const struct handler_pack **out)
{
	return registry_enabled_packs((const char *const *)cfg->packs.items, cfg->packs.n, out,
	                              MIGRATE_MAX_PACKS);
}

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS pgeventd_schema_migrations ("
                                       " pack text NOT NULL,"
                                       " version integer NOT NULL,"
                                       " name text NOT NULL,"
                                       " checksum text NOT NULL,"
                                       " applied_at timestamptz NOT NULL DEFAULT now(),"
                                       " PRIMARY KEY (pack, version))";

static void sha256_hex(const char *s, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Look up the recorded checksum of (pack, version). Returns 1 and fills
 * `sum` if applied, 0 if not, -1 on error. */
static int recorded_checksum(PGconn *conn, const char *pack, int version, char sum[65], char *err,
                             size_t errlen)
{
	char vbuf[16];
	const char *params[2] = { pack, vbuf };
	PGresult *res;
	int rc = -1;

	snprintf(vbuf, sizeof(vbuf), "%d", version);
	res = PQexecParams(conn,
	                   "SELECT checksum FROM pgeventd_schema_migrations"
	                   " WHERE pack = $1 AND version = $2",
	                   2, NULL, params, NULL, NULL, 0);
	if (!db_ok(conn, res, PGRES_TUPLES_OK, err, errlen))
		goto out;
	rc = PQntuples(res) > 0;
	if (rc)
		snprintf(sum, 65, "%s", PQgetvalue(res, 0, 0));
out:
	PQclear(res);
	return rc;
}

/* Whether pgeventd_schema_migrations exists yet (before the first migrate
 * it does not, and everything is pending). */
static int table_exists(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res =
	    PQexec(conn, "SELECT to_regclass('pgeventd_schema_migrations') IS NOT NULL");
	int rc = -1;

	if (db_ok(conn, res, PGRES_TUPLES_OK, err, errlen))
		rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

/* Check one migration: 1 = applied and unchanged, 0 = pending, -1 =
 * database error, MIGRATE_CHANGED = changed since it was applied. */
static int check_one(PGconn *conn, const char *pack, const struct migration *m, char *err,
                     size_t errlen)
{
	char want[65], have[65];
	int rc = recorded_checksum(conn, pack, m->version, have, err, errlen);

	if (rc <= 0)
		return rc;
	sha256_hex(m->sql, want);
	if (strcmp(want, have) != 0) {
		snprintf(err, errlen,
		         "migration %s/%s was changed after it was applied (recorded sha256 %.12s, "
		         "this binary has %.12s); restore the file and add a new migration instead",
		         pack, m->name, have, want);
		return MIGRATE_CHANGED;
	}
	return 1;
}

static bool apply_one(PGconn *conn, const char *pack, const struct migration *m, char *err,
                      size_t errlen)
{
	char sum[65], vbuf[16];
	const char *params[4] = { pack, vbuf, m->name, sum };
	PGresult *res = NULL;
	bool ok = false;

	sha256_hex(m->sql, sum);
	snprintf(vbuf, sizeof(vbuf), "%d", m->version);
	if (!db_exec(conn, "BEGIN", err, errlen))
		return false;
	res = PQexec(conn, m->sql);
	if (!res ||
	    (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)) {
		char why[512];

		db_ok(conn, res, PGRES_COMMAND_OK, why, sizeof(why));
		snprintf(err, errlen, "migration %s/%s failed: %s", pack, m->name, why);
		goto out;
	}
	PQclear(res);
	res = PQexecParams(conn,
	                   "INSERT INTO pgeventd_schema_migrations (pack, version, name, checksum)"
	                   " VALUES ($1, $2, $3, $4)",
	                   4, NULL, params, NULL, NULL, 0);
	if (!db_ok(conn, res, PGRES_COMMAND_OK, err, errlen))
		goto out;
	ok = db_exec(conn, "COMMIT", err, errlen);
out:
	PQclear(res);
	if (!ok) {
		char ignore[64];

		db_exec(conn, "ROLLBACK", ignore, sizeof(ignore));
	}
	return ok;
}

bool migrate_apply(PGconn *conn, const struct config *cfg, int *applied, char *err, size_t errlen)
{
	char ignore[256], names[64];
	bool ok = false;
	int pending;

	*applied = 0;
	/* Read first: on a current schema nothing is locked or created, so a
	 * role that may use the tables but not create them (README, "Database
	 * roles") can run migrate to confirm the schema is current. */
	pending = migrate_pending(conn, cfg, names, sizeof(names), err, errlen);
	if (pending <= 0)
		return pending == 0;
	if (!db_exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen))
		return false;
	if (!db_exec(conn, create_table_sql, err, errlen))
		goto out;
	const struct handler_pack *packs[MIGRATE_MAX_PACKS];
	size_t npacks = enabled_packs(cfg, packs);

	for (const struct handler_pack *const *p = packs; p < packs + npacks; p++) {
		if (!(*p)->migrations)
			continue;
		for (const struct migration *m = (*p)->migrations; m->sql; m++) {
			int rc = check_one(conn, (*p)->name, m, err, errlen);

			if (rc < 0)
				goto out;
			if (rc == 1)
				continue;
			if (!apply_one(conn, (*p)->name, m, err, errlen))
				goto out;
			log_kv(LOG_NOTICE, "migration applied", "pack", (*p)->name, "migration",
			       m->name, NULL);
			(*applied)++;
		}
	}
	ok = true;
out:
	db_exec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignore, sizeof(ignore));
	return ok;
}

int migrate_pending(PGconn *conn, const struct config *cfg, char *names, size_t nameslen, char *err,
                    size_t errlen)
{
	int pending = 0, exists = table_exists(conn, err, errlen);
	size_t used = 0;

	if (exists < 0)
		return -1;
	names[0] = '\0';
	const struct handler_pack *packs[MIGRATE_MAX_PACKS];
	size_t npacks = enabled_packs(cfg, packs);

	for (const struct handler_pack *const *p = packs; p < packs + npacks; p++) {
		if (!(*p)->migrations)
			continue;
		for (const struct migration *m = (*p)->migrations; m->sql; m++) {
			int rc = exists ? check_one(conn, (*p)->name, m, err, errlen) : 0;

			if (rc < 0)
				return rc;
			if (rc == 1)
				continue;
			pending++;
			if (used < nameslen) {
				int w = snprintf(names + used, nameslen - used, "%s%s/%s",
				                 used ? ", " : "", (*p)->name, m->name);
				if (w > 0)
					used += (size_t)w;
			}
		}
	}
	return pending;
}
