/* reload.c -- SIGHUP: re-read the configuration, keep the keys that need a restart, publish. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "reload.h"

#include "conf.h"
#include "db.h"
#include "log.h"
#include "routes.h"

static void log_reload_key(const char *key, const char *why)
{
	if (why)
		log_kv(LOG_NOTICE, "SIGHUP: changed key not applied", "key", key, "reason", why,
		       NULL);
	else
		log_kv(LOG_NOTICE, "SIGHUP: changed key applied", "key", key, NULL);
}

/*
 * The new routes' functions, looked up on a connection of their own (the
 * workers' are busy with batches): a route whose function is missing, of
 * the wrong signature or not ours to execute rejects the whole reload.
 * Frees `next` and returns false then.
 */
static bool resolve_routes(struct config *next, const struct config *cur)
{
	char err[1024];
	PGconn *conn;
	bool ok;

	if (!routes_same(&next->routes, &cur->routes))
		log_reload_key("routes", NULL);
	if (next->routes.n == 0)
		return true;
	conn = db_connect(conf_conninfo(next), "pgeventd-reload", err, sizeof(err));
	ok = conn && routes_resolve(conn, &next->routes, next->path, err, sizeof(err));
	PQfinish(conn);
	if (!ok) {
		log_kv(LOG_ERROR, "SIGHUP: new configuration rejected, keeping the old one",
		       "error", err, NULL);
		runtime_config_free(next);
	}
	return ok;
}

void reload_config(const char *config_path, struct runtime *rt)
{
	struct config *next;
	char err[1024];

	if (!config_path) {
		log_kv(LOG_NOTICE, "SIGHUP: no configuration file to re-read", NULL);
		return;
	}
	next = runtime_config_new();
	if (!next) {
		log_kv(LOG_ERROR, "SIGHUP: out of memory, keeping the old configuration", NULL);
		return;
	}
	conf_init(next);
	if (!conf_load(next, config_path, err, sizeof(err))) {
		log_kv(LOG_ERROR, "SIGHUP: new configuration rejected, keeping the old one",
		       "error", err, NULL);
		runtime_config_free(next);
		return;
	}
	if (!conf_keep_restart_keys(next, runtime_config(rt), log_reload_key)) {
		log_kv(LOG_ERROR, "SIGHUP: out of memory, keeping the old configuration", NULL);
		runtime_config_free(next);
		return;
	}
	/* conf_load checked the routes against the file's packs; packs need a
	 * restart, so check them again against the packs that stay. */
	if (!conf_routes_check(next, config_path, err, sizeof(err))) {
		log_kv(LOG_ERROR, "SIGHUP: new configuration rejected, keeping the old one",
		       "error", err, NULL);
		runtime_config_free(next);
		return;
	}
	if (!resolve_routes(next, runtime_config(rt)))
		return;
	log_configure(next->log_level, next->log_format);
	routes_telemetry(&runtime_config(rt)->routes, &next->routes);
	runtime_publish(rt, next);
	log_kv(LOG_NOTICE, "SIGHUP: configuration re-read", "file", config_path, NULL);
}
