/*
 * main.c -- pgeventd's command line: a static table of subcommands.
 *
 *   pgeventd [-c FILE] run [--once]    the daemon
 *   pgeventd [-c FILE] migrate         apply pending migrations
 *   pgeventd [-c FILE] check-config    validate the configuration (also --check-config)
 *   pgeventd version | help
 *
 * Exit codes follow sysexits(3): 64 usage, 65 an applied migration was
 * changed, 69 database unavailable, 75 migrations pending, 78 configuration
 * error; 1 when a shutdown had to roll batches back.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cmd_dba.h"
#include "cmd_relay.h"
#include "conf.h"
#include "db.h"
#include "handlers/registry.h"
#include "health.h"
#include "log.h"
#include "migrate.h"
#include "notify.h"
#include "relay.h"
#include "retention.h"
#include "stats.h"
#include "telemetry.h"
#include "util.h"
#include "worker.h"

#define EX_OK_          0
#define EX_USAGE_       64
#define EX_DATAERR_     65
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_    70
#define EX_TEMPFAIL_    75

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/pgeventd/pgeventd.conf"

struct cli {
	const char *config_path; /* -c, else $PGEVENTD_CONFIG, else DEFAULT_CONFIG if present */
	bool explicit_path;
};

struct command {
	const char *name;
	int (*fn)(struct cli *cli, int argc, char **argv);
	const char *summary;
	const char *usage;
};

static int cmd_run(struct cli *cli, int argc, char **argv);
static int cmd_migrate(struct cli *cli, int argc, char **argv);
static int cmd_check_config(struct cli *cli, int argc, char **argv);
static int cmd_version(struct cli *cli, int argc, char **argv);
static int cmd_help(struct cli *cli, int argc, char **argv);
static int cmd_subscriptions(struct cli *cli, int argc, char **argv);
static int cmd_deliveries(struct cli *cli, int argc, char **argv);
static int cmd_status(struct cli *cli, int argc, char **argv);
static int cmd_replay(struct cli *cli, int argc, char **argv);
static int cmd_dead_letters(struct cli *cli, int argc, char **argv);
static int cmd_show(struct cli *cli, int argc, char **argv);

static const struct command commands[] = {
	{ "run", cmd_run, "claim and handle events until stopped",
	  "run [--once]\n"
	  "  --once   handle every event that is due, then exit 0 (for cron and scripts);\n"
	  "           exit 69 when the database cannot be reached for 30 s, 75 when a\n"
	  "           signal stopped it before everything due was handled" },
	{ "migrate", cmd_migrate, "apply pending schema migrations", "migrate" },
	{ "check-config", cmd_check_config, "validate the configuration file and exit",
	  "check-config [--print]\n"
	  "  --print  list every key: whether SIGHUP applies it (reload) or it needs a\n"
	  "           restart, its value (secrets as ***) and its default when different" },
	{ "status", cmd_status, "one screen: queue, retries, dead letters, deliveries",
	  cmd_status_usage },
	{ "replay", cmd_replay, "mark events unprocessed so they run again", cmd_replay_usage },
	{ "dead-letters", cmd_dead_letters, "list dead-lettered events", cmd_dead_letters_usage },
	{ "show", cmd_show, "one event: attempts, last error, dead letters, deliveries",
	  cmd_show_usage },
	{ "subscriptions", cmd_subscriptions, "manage webhook subscriptions",
	  "subscriptions add --name NAME --url URL [--events 'job.*,order.created']\n"
	  "                       [--scheme standard|timestamped_hex|body_hex] [--secret S]\n"
	  "                       [--timeout-ms N] [--max-attempts N] [--header 'Name: value']...\n"
	  "                       [--id-header H] [--timestamp-header H] [--signature-header H]\n"
	  "       subscriptions list [--json]\n"
	  "       subscriptions disable NAME [--reason TEXT] | enable NAME\n"
	  "       subscriptions rotate-secret NAME [--keep-old]\n"
	  "  A secret is generated when none is given and printed once." },
	{ "deliveries", cmd_deliveries, "list webhook deliveries, queue failed ones again",
	  "deliveries list [--status pending|in_flight|delivered|failed|dead]\n"
	  "                       [--subscription NAME] [--limit N] [--json]\n"
	  "       deliveries retry ID... | --subscription NAME [--since TIMESTAMP]\n"
	  "  retry queues failed and dead deliveries again with fresh attempts." },
	{ "version", cmd_version, "print the version", "version" },
	{ "help", cmd_help, "list commands, or show one: help COMMAND", "help [COMMAND]" },
	{ NULL, NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: pgeventd [-c FILE] COMMAND [OPTIONS]\n"
	           "       pgeventd --check-config [-c FILE]\n"
	           "(-c and -V may also follow COMMAND: pgeventd check-config -c FILE)\n\n"
	           "commands:\n");
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-14s %s\n", c->name, c->summary);
	fprintf(f,
	        "\noptions:\n"
	        "  -c, --config FILE   configuration file (default: $PGEVENTD_CONFIG, else "
	        "%s if it exists)\n"
	        "  -h, --help          this help; COMMAND --help for a command's\n"
	        "  -V, --version       print the version\n",
	        DEFAULT_CONFIG);
}

/*
 * Take the global options that follow the command out of its arguments,
 * so that "pgeventd check-config -c FILE" means "pgeventd -c FILE
 * check-config": -c FILE, -cFILE, --config FILE, --config=FILE, and -V or
 * --version. Nothing after "--" is looked at, and a value that is itself
 * "-c" must be written --option=-c. Returns -1 to go on, else the exit code.
 */
static int take_global_options(struct cli *cli, int *argc, char **argv)
{
	int out = 1, i;

	for (i = 1; i < *argc && strcmp(argv[i], "--") != 0; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "pgeventd: option %s needs a FILE\n\n", a);
				usage(stderr);
				return EX_USAGE_;
			}
			cli->config_path = argv[++i];
		} else if (strncmp(a, "-c", 2) == 0 && a[2] && a[1] != '-') {
			cli->config_path = a + 2;
		} else if (strncmp(a, "--config=", 9) == 0) {
			cli->config_path = a + 9;
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			return cmd_version(cli, 0, NULL);
		} else {
			argv[out++] = argv[i];
			continue;
		}
		cli->explicit_path = true;
	}
	while (i < *argc)
		argv[out++] = argv[i++];
	argv[out] = NULL;
	*argc = out;
	return -1;
}

/* Load the configuration the CLI points at. On error prints it and
 * returns false: callers exit EX_CONFIG_ERROR. */
static bool load_config(const struct cli *cli, struct config *cfg)
{
	char err[1024];

	conf_init(cfg);
	if (!cli->config_path)
		return true;
	if (!conf_load(cfg, cli->config_path, err, sizeof(err))) {
		fprintf(stderr, "pgeventd: configuration error: %s\n", err);
		conf_release(cfg);
		return false;
	}
	return true;
}

/* Parse a command's own options: only --help (and what `extra` allows). */
static int want_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

static const struct command *find_command(const char *name)
{
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static int command_usage(const char *name, FILE *f, int code)
{
	const struct command *c = find_command(name);

	fprintf(f, "usage: pgeventd [-c FILE] %s\n\n%s\n", c->usage, c->summary);
	return code;
}

static int cmd_version(struct cli *cli, int argc, char **argv)
{
	(void)cli;
	(void)argc;
	(void)argv;
	printf("pgeventd %s\n", PACKAGE_VERSION);
	return EX_OK_;
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	(void)cli;
	if (argc > 1 && find_command(argv[1]))
		return command_usage(argv[1], stdout, EX_OK_);
	usage(stdout);
	return EX_OK_;
}

static void print_key(void *arg, const char *key, const char *value, const char *def,
                      bool reloadable, const char *help)
{
	(void)arg;
	(void)help;
	printf("%-34s %-8s %s%s%s\n", key, reloadable ? "reload" : "restart", value,
	       strcmp(value, def) == 0 ? "" : "   # default: ",
	       strcmp(value, def) == 0 ? ""
	       : def[0]                ? def
	                               : "\"\"");
}

static int cmd_check_config(struct cli *cli, int argc, char **argv)
{
	struct config cfg;
	bool print = argc == 2 && strcmp(argv[1], "--print") == 0;

	if (want_help(argc, argv))
		return command_usage("check-config", stdout, EX_OK_);
	if (argc > 1 && !print)
		return command_usage("check-config", stderr, EX_USAGE_);
	if (!load_config(cli, &cfg))
		return EX_CONFIG_ERROR;
	if (print)
		conf_visit(&cfg, print_key, NULL);
	else
		printf("configuration OK (%s)\n",
		       cli->config_path ? cli->config_path : "built-in defaults");
	conf_release(&cfg);
	return EX_OK_;
}

static int cmd_migrate(struct cli *cli, int argc, char **argv)
{
	struct config cfg;
	char err[1024];
	PGconn *conn;
	int applied = 0, rc = EX_OK_;

	if (want_help(argc, argv))
		return command_usage("migrate", stdout, EX_OK_);
	if (argc > 1)
		return command_usage("migrate", stderr, EX_USAGE_);
	if (!load_config(cli, &cfg))
		return EX_CONFIG_ERROR;
	log_configure(cfg.log_level, cfg.log_format);
	conn = db_connect(conf_conninfo(&cfg), "pgeventd migrate", err, sizeof(err));
	if (!conn) {
		fprintf(stderr, "pgeventd: cannot connect to the database: %s\n", err);
		conf_release(&cfg);
		return EX_UNAVAILABLE_;
	}
	if (!migrate_apply(conn, &cfg, &applied, err, sizeof(err))) {
		fprintf(stderr, "pgeventd: migrate: %s\n", err);
		rc = 1;
	} else {
		printf("%d migration%s applied; schema is current\n", applied,
		       applied == 1 ? "" : "s");
	}
	PQfinish(conn);
	conf_release(&cfg);
	return rc;
}

/* ---- relay administration ----------------------------------------------- */

/*
 * The operator commands: --help, then the configuration (for the
 * connection string), then the command's own parser. `verb`: the command
 * takes a verb (subscriptions add, deliveries list), so none is a usage error.
 */
static int admin(struct cli *cli, const char *name, int argc, char **argv, bool verb,
                 int (*fn)(const struct config *, int, char **))
{
	struct config cfg;
	int rc;

	if (want_help(argc, argv))
		return command_usage(name, stdout, EX_OK_);
	if (verb && argc < 2)
		return command_usage(name, stderr, EX_USAGE_);
	if (!load_config(cli, &cfg))
		return EX_CONFIG_ERROR;
	rc = fn(&cfg, argc, argv);
	conf_release(&cfg);
	return rc;
}

static int cmd_subscriptions(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "subscriptions", argc, argv, true, cmd_subscriptions_main);
}

static int cmd_deliveries(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "deliveries", argc, argv, true, cmd_deliveries_main);
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "status", argc, argv, false, cmd_status_main);
}

static int cmd_replay(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "replay", argc, argv, false, cmd_replay_main);
}

static int cmd_dead_letters(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "dead-letters", argc, argv, false, cmd_dead_letters_main);
}

static int cmd_show(struct cli *cli, int argc, char **argv)
{
	return admin(cli, "show", argc, argv, false, cmd_show_main);
}

/* ---- run ------------------------------------------------------------ */

static int wake_pipe[2] = { -1, -1 };

/* run --once gives up on a database it cannot reach for this long: at
 * start, and for a worker that lost its connection (doc/pgeventd.8). */
#define ONCE_GIVE_UP_MS 30000

/* Wait for the first database connection: retries (a database that is
 * still starting is normal under systemd) until a stop signal or, when
 * `give_up_at` (monotonic ms) is not 0, that time (logged as an
 * error). Returns NULL then. */
static PGconn *connect_startup(const struct config *cfg, const sigset_t *sigs, int64_t give_up_at)
{
	int delay = 200;
	bool told = false;

	for (;;) {
		char err[1024];
		PGconn *conn = db_connect(conf_conninfo(cfg), "pgeventd", err, sizeof(err));
		struct timespec ts;
		int64_t now;

		if (conn)
			return conn;
		if (!told || log_enabled(LOG_DEBUG))
			log_kv(LOG_WARNING, "database unavailable, retrying", "error", err, NULL);
		told = true;
		now = util_mono_ms();
		if (give_up_at && now >= give_up_at) {
			log_kv(LOG_ERROR, "database unavailable: run --once gives up", "error", err,
			       NULL);
			return NULL;
		}
		if (give_up_at && now + delay > give_up_at)
			delay = (int)(give_up_at - now);
		ts.tv_sec = delay / 1000;
		ts.tv_nsec = (long)(delay % 1000) * 1000000L;
		int sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			return NULL;
		delay = delay * 2 > 10000 ? 10000 : delay * 2;
	}
}

/*
 * run --once: whether a worker has been without its database connection
 * for ONCE_GIVE_UP_MS (since `started_s`, wall clock, if it never had
 * one). The worker itself would retry until stopped.
 */
static bool once_worker_stranded(const struct worker *workers, int n, double started_s)
{
	double now = util_real_s();

	for (int i = 0; i < n; i++) {
		double since = atomic_load(&workers[i].connected_changed_at);

		if (since < started_s)
			since = started_s;
		if (!atomic_load(&workers[i].connected) &&
		    (now - since) * 1000.0 >= (double)ONCE_GIVE_UP_MS)
			return true;
	}
	return false;
}

static void wake_all(void)
{
	ssize_t rc;

	do {
		rc = write(wake_pipe[1], "x", 1);
	} while (rc < 0 && errno == EINTR);
}

static void log_reload_key(const char *key, const char *why)
{
	if (why)
		log_kv(LOG_NOTICE, "SIGHUP: changed key not applied", "key", key, "reason", why,
		       NULL);
	else
		log_kv(LOG_NOTICE, "SIGHUP: changed key applied", "key", key, NULL);
}

/* Re-read the file and publish it: reloadable keys take effect at each
 * thread's next turn, the others keep their running values (logged). An
 * invalid file changes nothing. */
static void reload_config(struct cli *cli, struct runtime *rt)
{
	struct config *next;
	char err[1024];

	if (!cli->config_path) {
		log_kv(LOG_NOTICE, "SIGHUP: no configuration file to re-read", NULL);
		return;
	}
	next = runtime_config_new();
	if (!next) {
		log_kv(LOG_ERROR, "SIGHUP: out of memory, keeping the old configuration", NULL);
		return;
	}
	conf_init(next);
	if (!conf_load(next, cli->config_path, err, sizeof(err))) {
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
	log_kv(LOG_NOTICE, "SIGHUP: configuration re-read", "file", cli->config_path, NULL);
}

/* A one-line summary for systemd's STATUS= (what `systemctl status` shows). */
static void status_line(const struct worker *workers, int n, char *buf, size_t len)
{
	int connected = 0;

	for (int i = 0; i < n; i++)
		connected += atomic_load(&workers[i].connected) != 0;
	snprintf(buf, len,
	         "%d/%d workers connected; %llu events handled (%llu retried, %llu "
	         "dead-lettered)",
	         connected, n, (unsigned long long)atomic_load(&stats.processed),
	         (unsigned long long)atomic_load(&stats.retried),
	         (unsigned long long)atomic_load(&stats.dead_lettered));
}

/*
 * The systemd side of the main loop: STATUS= when the summary changes (at
 * most every 5 s), WATCHDOG=1 every half watchdog interval but only while
 * every claim loop turns, so a wedged loop gets the process restarted.
 */
struct supervisor {
	uint64_t watchdog_ms; /* half of WATCHDOG_USEC; 0 = no watchdog */
	int64_t next_ping_ms;
	int64_t next_status_ms;
	bool stalled; /* a stall was logged and pings are held back */
	char last_status[256];
};

static void supervise(struct supervisor *sv, const struct health_deps *hd)
{
	int64_t now = util_mono_ms();
	char why[200];

	if (sv->watchdog_ms && now >= sv->next_ping_ms) {
		sv->next_ping_ms = now + (int64_t)sv->watchdog_ms;
		if (health_loops_turning(hd, why, sizeof(why))) {
			if (sv->stalled)
				log_kv(LOG_NOTICE, "claim loops turning again: watchdog fed", NULL);
			sv->stalled = false;
			notify_watchdog();
		} else if (!sv->stalled) {
			log_kv(LOG_ERROR, "watchdog not fed: a loop is stalled", "reason", why,
			       NULL);
			sv->stalled = true;
		}
	}
	if (now >= sv->next_status_ms) {
		char line[256];

		sv->next_status_ms = now + 5000;
		status_line(hd->workers, hd->nworkers, line, sizeof(line));
		if (strcmp(line, sv->last_status) != 0) {
			notify_status(line);
			snprintf(sv->last_status, sizeof(sv->last_status), "%s", line);
		}
	}
}

static int cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { { "once", no_argument, NULL, 'o' },
		                              { "help", no_argument, NULL, 'h' },
		                              { NULL, 0, NULL, 0 } };
	struct config *cfg; /* as loaded at start; owned by rt once runtime_init ran */
	struct registry reg;
	struct runtime rt;
	struct worker *workers = NULL;
	struct health *health = NULL;
	struct relay *relay = NULL;
	struct retention *retention = NULL;
	struct health_deps hd;
	struct supervisor sv = { 0 };
	sigset_t sigs;
	char err[1024], pending[1024];
	PGconn *conn = NULL;
	int started = 0, rc = EX_OK_, opt, npending;
	bool once = false, interrupted = false;
	int64_t deadline = 0, give_up_at = 0;
	double started_s = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'o')
			once = true;
		else if (opt == 'h')
			return command_usage("run", stdout, EX_OK_);
		else
			return command_usage("run", stderr, EX_USAGE_);
	}
	if (optind < argc)
		return command_usage("run", stderr, EX_USAGE_);
	cfg = runtime_config_new();
	if (!cfg) {
		fprintf(stderr, "pgeventd: out of memory\n");
		return EX_SOFTWARE_;
	}
	if (!load_config(cli, cfg)) {
		runtime_config_free(cfg);
		return EX_CONFIG_ERROR;
	}
	runtime_init(&rt, cfg);
	log_configure(cfg->log_level, cfg->log_format);
	if (!registry_build(&reg, (const char *const *)cfg->packs.items, cfg->packs.n, err,
	                    sizeof(err))) {
		log_kv(LOG_ERROR, "cannot build the handler registry", "error", err, NULL);
		runtime_release(&rt);
		return EX_SOFTWARE_;
	}
	/* Before any thread: libcurl's global state is not thread-safe. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_kv(LOG_ERROR, "curl_global_init failed", NULL);
		registry_release(&reg);
		runtime_release(&rt);
		return EX_SOFTWARE_;
	}

	/* Signals are taken synchronously by this thread (sigtimedwait); the
	 * workers inherit the blocked mask and never see them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	notify_status("connecting to the database");
	/* A batch job must not hang on a database that is gone, nor report
	 * success when it never reached it: --once gives up and exits 69. */
	if (once)
		give_up_at = util_mono_ms() + ONCE_GIVE_UP_MS;
	for (;;) {
		bool lost;

		conn = connect_startup(cfg, &sigs, give_up_at);
		if (!conn) {
			if (once)
				rc = EX_UNAVAILABLE_;
			goto out;
		}
		npending = migrate_pending(conn, cfg, pending, sizeof(pending), err, sizeof(err));
		lost = npending == -1 && db_broken(conn);
		PQfinish(conn);
		conn = NULL;
		if (!lost)
			break;
		/* The database went away between connecting and checking. */
		log_kv(LOG_WARNING, "database lost during start-up, retrying", "error", err, NULL);
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			if (once)
				rc = EX_UNAVAILABLE_;
			goto out;
		}
	}
	if (npending < 0) {
		log_kv(LOG_ERROR, "cannot check migrations", "error", err, NULL);
		rc = npending == MIGRATE_CHANGED ? EX_DATAERR_ : EX_UNAVAILABLE_;
		goto out;
	}
	if (npending > 0) {
		log_kv(LOG_ERROR, "migrations pending: run `pgeventd migrate` first", "pending",
		       pending, NULL);
		rc = EX_TEMPFAIL_;
		goto out;
	}

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_kv(LOG_ERROR, "pipe failed", "error", strerror(errno), NULL);
		rc = EX_SOFTWARE_;
		goto out;
	}
	rt.reg = &reg;
	rt.wake_fd = wake_pipe[0];
	rt.once = once;
	workers = calloc((size_t)cfg->workers, sizeof(*workers));
	if (!workers || !telemetry_init(&reg, cfg->workers, PACKAGE_VERSION)) {
		log_kv(LOG_ERROR, "out of memory", NULL);
		rc = EX_SOFTWARE_;
		goto out;
	}
	if (cfg->relay.event_types.n > 0) {
		relay = relay_start(&rt);
		if (!relay) {
			rc = EX_SOFTWARE_;
			goto out;
		}
	}
	hd = (struct health_deps){ &reg, &rt, workers, cfg->workers, relay_state(relay) };
	/* run --once is a batch job: no server (it would clash with the
	 * daemon's port), no sampler, no retention. */
	if (!once) {
		health = health_start(&hd, err, sizeof(err));
		if (!health) {
			log_kv(LOG_ERROR, "cannot start the health server", "error", err, NULL);
			rc = EX_UNAVAILABLE_;
			goto out;
		}
		retention = retention_start(&rt);
		if (!retention) {
			rc = EX_SOFTWARE_;
			goto out;
		}
	}
	for (int i = 0; i < cfg->workers; i++) {
		if (!worker_start(&workers[i], i + 1, &rt)) {
			rc = EX_SOFTWARE_;
			atomic_store(&rt.stopping, 1);
			wake_all();
			break;
		}
		started++;
	}
	if (started == cfg->workers) {
		char nw[16], line[256];

		snprintf(nw, sizeof(nw), "%d", cfg->workers);
		log_kv(LOG_NOTICE, "pgeventd started", "version", PACKAGE_VERSION, "workers", nw,
		       "listen", cfg->listen ? "true" : "false", "once", once ? "true" : "false",
		       NULL);
		/* The configuration is loaded, the database answered, the schema
		 * is current and the health socket listens: ready. */
		snprintf(line, sizeof(line), "running with %d workers", cfg->workers);
		notify_ready(line);
		sv.watchdog_ms = notify_watchdog_usec() / 2000;
		snprintf(sv.last_status, sizeof(sv.last_status), "%s", line);
		sv.next_status_ms = util_mono_ms() + 5000;
	}
	started_s = util_real_s();

	/* The main loop: signals, the shutdown deadline, the workers and the
	 * relay finishing, and systemd's watchdog. */
	while (atomic_load(&rt.finished) < started || (relay && !atomic_load(&rt.relay_done))) {
		struct timespec ts = { 0, 100 * 1000000L };
		int sig = sigtimedwait(&sigs, NULL, &ts);

		health_tick(health);
		if (!atomic_load(&rt.stopping))
			supervise(&sv, &hd);
		if (once && !atomic_load(&rt.stopping) &&
		    once_worker_stranded(workers, started, started_s)) {
			log_kv(LOG_ERROR, "database unavailable: run --once gives up", NULL);
			rc = EX_UNAVAILABLE_;
			atomic_store(&rt.stopping, 1);
			wake_all();
		}
		if (sig == SIGHUP) {
			notify_reloading();
			reload_config(cli, &rt);
			health_config_changed(health);
			notify_ready(sv.last_status);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (!atomic_load(&rt.stopping)) {
				/* --once stopped before it handled everything due */
				interrupted = once && rc == EX_OK_;
				log_kv(LOG_NOTICE, "shutting down: finishing the batches in hand",
				       "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
				notify_stopping("stopping: finishing the batches in hand");
				atomic_store(&rt.stopping, 1);
				deadline =
				    util_mono_ms() + runtime_config(&rt)->shutdown_timeout_ms;
				wake_all();
			} else if (!atomic_load(&rt.aborting)) {
				log_kv(LOG_WARNING,
				       "second signal: rolling back the batches in hand", NULL);
				atomic_store(&rt.aborting, 1);
				rc = 1;
				for (int i = 0; i < started; i++)
					worker_cancel(&workers[i]);
			}
		}
		/* The relay keeps its own deadline and puts back what it could not
		 * finish; only a worker's batch in hand is rolled back here. */
		if (deadline && !atomic_load(&rt.aborting) && util_mono_ms() > deadline &&
		    atomic_load(&rt.finished) < started) {
			log_kv(LOG_WARNING,
			       "shutdown_timeout_ms passed: rolling back the batches in hand",
			       NULL);
			atomic_store(&rt.aborting, 1);
			rc = 1;
			for (int i = 0; i < started; i++)
				worker_cancel(&workers[i]);
		}
	}
	for (int i = 0; i < started; i++)
		worker_join(&workers[i]);
	/* Not a success for a cron job: run it again (75, EX_TEMPFAIL). */
	if (interrupted && rc == EX_OK_)
		rc = EX_TEMPFAIL_;
	log_kv(LOG_NOTICE, "pgeventd stopped", NULL);
out:
	if (relay || retention) {
		/* reached directly on a start-up failure: stop them first */
		atomic_store(&rt.stopping, 1);
		if (wake_pipe[1] >= 0)
			wake_all();
	}
	/* /health keeps answering ("shutting down") while a retention pass
	 * delays the exit, so the relay it reports on is freed only once the
	 * server has stopped: nothing it serves is torn down under it. */
	retention_join(retention);
	health_stop(health);
	relay_join(relay);
	telemetry_free();
	free(workers);
	if (wake_pipe[0] >= 0) {
		close(wake_pipe[0]);
		close(wake_pipe[1]);
		wake_pipe[0] = wake_pipe[1] = -1;
	}
	registry_release(&reg);
	runtime_release(&rt);
	curl_global_cleanup();
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli cli = { NULL, false };
	const struct command *c = NULL;
	int opt, rc;
	bool check = false;

	/* The packs this binary links: the registry hands them to the rest. */
	registry_link_packs(handler_packs);
	/* "+": stop at the command name; its options are its own. */
	while ((opt = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			cli.config_path = optarg;
			cli.explicit_path = true;
			break;
		case 'C':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return EX_OK_;
		case 'V':
			return cmd_version(&cli, 0, NULL);
		default:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	if (!check && optind < argc) {
		c = find_command(argv[optind]);
		if (!c) {
			fprintf(stderr, "pgeventd: unknown command \"%s\"\n\n", argv[optind]);
			usage(stderr);
			return EX_USAGE_;
		}
		argc -= optind;
		argv += optind;
		rc = take_global_options(&cli, &argc, argv);
		if (rc >= 0)
			return rc;
	}
	if (!cli.config_path && getenv("PGEVENTD_CONFIG") && *getenv("PGEVENTD_CONFIG")) {
		cli.config_path = getenv("PGEVENTD_CONFIG");
		cli.explicit_path = true;
	}
	if (!cli.config_path && access(DEFAULT_CONFIG, F_OK) == 0)
		cli.config_path = DEFAULT_CONFIG;

	if (check) {
		char *av[] = { "check-config", NULL };

		if (optind < argc) {
			usage(stderr);
			return EX_USAGE_;
		}
		return cmd_check_config(&cli, 1, av);
	}
	if (!c) {
		usage(stderr);
		return EX_USAGE_;
	}
	return c->fn(&cli, argc, argv);
}
