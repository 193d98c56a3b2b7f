/* reload.c -- SIGHUP: re-read the configuration, keep the keys that need a restart, publish. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "reload.h"

#include "conf.h"
#include "log.h"

static void log_reload_key(const char *key, const char *why)
{
	if (why)
		log_kv(LOG_NOTICE, "SIGHUP: changed key not applied", "key", key, "reason", why,
		       NULL);
	else
		log_kv(LOG_NOTICE, "SIGHUP: changed key applied", "key", key, NULL);
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
	log_configure(next->log_level, next->log_format);
	runtime_publish(rt, next);
	log_kv(LOG_NOTICE, "SIGHUP: configuration re-read", "file", config_path, NULL);
}
