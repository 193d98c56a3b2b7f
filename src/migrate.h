/*
 * migrate.h -- apply the SQL migrations embedded in the binary.
 *
 * The core pack's migrations (migrations/NNNN_*.sql) and those of every
 * enabled pack are applied in order, each in its own transaction, under an
 * advisory lock, and recorded with their SHA-256 in
 * pgeventd_schema_migrations (pack, version, name, checksum, applied_at).
 */
#ifndef PGEVENTD_MIGRATE_H
#define PGEVENTD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "conf.h"

/*
 * Apply every pending migration of the enabled packs. Logs one line per
 * migration applied; `*applied` gets how many. When none is pending it
 * only reads pgeventd_schema_migrations: no lock, no DDL, so a role
 * without CREATE can confirm a current schema. Refuses (false, message in
 * `err`) when an applied migration's file has changed since.
 */
bool migrate_apply(PGconn *conn, const struct config *cfg, int *applied, char *err, size_t errlen);

/* Returned by migrate_pending when an applied migration's file changed. */
#define MIGRATE_CHANGED (-2)

/*
 * Count the pending migrations of the enabled packs and list them as
 * "core/0002_x.sql, buddy/0001_y.sql" in `names`. Returns the count, or
 * -1 (database error) or MIGRATE_CHANGED, with `err` set.
 */
int migrate_pending(PGconn *conn, const struct config *cfg, char *names, size_t nameslen, char *err,
                    size_t errlen);

#endif
