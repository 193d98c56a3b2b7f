/*
 * main.c -- pgeventd's command line: a static table of subcommands, the
 * global options, and the small commands; `run` is daemon.c.
 *
 *   pgeventd [-c FILE] run [--once]    the daemon
 *   pgeventd [-c FILE] migrate         apply pending migrations
 *   pgeventd [-c FILE] check-config    validate the configuration (also --check-config)
 *   pgeventd version | help
 *
 * Exit codes follow sysexits(3): 64 usage, 65 an applied migration was
 * changed, 69 database unavailable, 70 internal error, 75 migrations
 * pending, 78 configuration error; 1 when a shutdown had to roll batches
 * back.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cmd_dba.h"
#include "cmd_relay.h"
#include "conf.h"
#include "daemon.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "handlers/registry.h"
#include "routes.h"
#include "runtime.h"

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
static int cmd_keys(struct cli *cli, int argc, char **argv);

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
	{ "keys", cmd_keys, "ordered event types: list parked keys, unpark one", cmd_keys_usage },
	{ "subscriptions", cmd_subscriptions, "manage webhook subscriptions",
	  "subscriptions add --name NAME --url URL [--events 'job.*,order.created']\n"
	  "                       [--scheme standard|timestamped_hex|body_hex] [--secret S]\n"
	  "                       [--timeout-ms N] [--max-attempts N] [--header 'Name: value']...\n"
	  "                       [--id-header H] [--timestamp-header H] [--signature-header H]\n"
	  "                       [--max-in-flight N] [--rate-limit N|none] [--ordered]\n"
	  "       subscriptions update NAME [--max-in-flight N] [--rate-limit N|none]\n"
	  "                       [--ordered[=false]]\n"
	  "       subscriptions list [--json]\n"
	  "       subscriptions disable NAME [--reason TEXT] | enable NAME\n"
	  "       subscriptions rotate-secret NAME [--keep-old]\n"
	  "  A secret is generated when none is given and printed once." },
	{ "deliveries", cmd_deliveries, "list webhook deliveries, queue failed ones again",
	  "deliveries list [--status pending|in_flight|delivered|failed|dead]\n"
	  "                       [--subscription NAME] [--limit N] [--json]\n"
	  "       deliveries retry ID... | --subscription NAME [--since TIMESTAMP]\n"
	  "  retry queues failed and dead deliveries again with fresh attempts\n"
	  "  (of an ordered subscription: at the end of its key's queue)." },
	{ "version", cmd_version, "print the version", "version" },
	{ "help", cmd_help, "list commands, or show one: help COMMAND", "help [COMMAND]" },
	{ NULL, NULL, NULL, NULL },
};

static void print_usage(FILE *f)
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
				print_usage(stderr);
				return EX_USAGE;
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
 * returns false: callers exit EX_CONFIG. */
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

/* Whether a command's arguments ask for its help (--help or -h). */
static int wants_help(int argc, char **argv)
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
	return EX_OK;
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	(void)cli;
	if (argc > 1 && find_command(argv[1]))
		return command_usage(argv[1], stdout, EX_OK);
	print_usage(stdout);
	return EX_OK;
}

static void print_config_key(void *arg, const char *key, const char *value, const char *def,
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

/* After the keys, a blank line, then every event type routed: the C
 * handlers of the enabled packs, then the SQL routes (their functions are
 * looked up only when the daemon starts or reloads). */
static void print_routing(const struct config *cfg)
{
	struct registry reg;
	char err[256];
	int nroutes = 0;

	for (int i = 0; i < cfg->routes.n; i++)
		nroutes += cfg->routes.items[i].events.n;
	printf("%-34s %-8s %d pattern%s\n", "routes", "reload", nroutes, nroutes == 1 ? "" : "s");
	printf("\n# event types routed: type, kind (c handler or sql route), handler\n");
	if (registry_build(&reg, (const char *const *)cfg->packs.items, cfg->packs.n, err,
	                   sizeof(err))) {
		for (size_t i = 0; i < reg.n; i++)
			printf("%-34s %-8s %s (pack %s)\n", reg.entries[i]->event_type, "c",
			       reg.entries[i]->name, reg.packs[i]->name);
		registry_release(&reg);
	}
	for (int i = 0; i < cfg->routes.n; i++) {
		const struct route *r = &cfg->routes.items[i];

		for (int k = 0; k < r->events.n; k++)
			printf("%-34s %-8s %s (routes[%d], line %d)\n", r->events.items[k], "sql",
			       r->call, r->index, r->line);
	}
}

static int cmd_check_config(struct cli *cli, int argc, char **argv)
{
	struct config cfg;
	bool print = argc == 2 && strcmp(argv[1], "--print") == 0;

	if (wants_help(argc, argv))
		return command_usage("check-config", stdout, EX_OK);
	if (argc > 1 && !print)
		return command_usage("check-config", stderr, EX_USAGE);
	if (!load_config(cli, &cfg))
		return EX_CONFIG;
	if (print) {
		conf_visit(&cfg, print_config_key, NULL);
		print_routing(&cfg);
	} else
		printf("configuration OK (%s)\n",
		       cli->config_path ? cli->config_path : "built-in defaults");
	conf_release(&cfg);
	return EX_OK;
}

static int cmd_migrate(struct cli *cli, int argc, char **argv)
{
	struct config cfg;
	char err[1024];
	PGconn *conn;
	int applied = 0, rc = EX_OK;

	if (wants_help(argc, argv))
		return command_usage("migrate", stdout, EX_OK);
	if (argc > 1)
		return command_usage("migrate", stderr, EX_USAGE);
	if (!load_config(cli, &cfg))
		return EX_CONFIG;
	log_configure(cfg.log_level, cfg.log_format);
	conn = db_connect(conf_conninfo(&cfg), "pgeventd migrate", err, sizeof(err));
	if (!conn) {
		fprintf(stderr, "pgeventd: cannot connect to the database: %s\n", err);
		conf_release(&cfg);
		return EX_UNAVAILABLE;
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
static int admin_command(struct cli *cli, const char *name, int argc, char **argv, bool verb,
                         int (*fn)(const struct config *, int, char **))
{
	struct config cfg;
	int rc;

	if (wants_help(argc, argv))
		return command_usage(name, stdout, EX_OK);
	if (verb && argc < 2)
		return command_usage(name, stderr, EX_USAGE);
	if (!load_config(cli, &cfg))
		return EX_CONFIG;
	rc = fn(&cfg, argc, argv);
	conf_release(&cfg);
	return rc;
}

static int cmd_subscriptions(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "subscriptions", argc, argv, true, cmd_subscriptions_main);
}

static int cmd_deliveries(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "deliveries", argc, argv, true, cmd_deliveries_main);
}

static int cmd_status(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "status", argc, argv, false, cmd_status_main);
}

static int cmd_replay(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "replay", argc, argv, false, cmd_replay_main);
}

static int cmd_dead_letters(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "dead-letters", argc, argv, false, cmd_dead_letters_main);
}

static int cmd_show(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "show", argc, argv, false, cmd_show_main);
}

static int cmd_keys(struct cli *cli, int argc, char **argv)
{
	return admin_command(cli, "keys", argc, argv, false, cmd_keys_main);
}

/* ---- run ------------------------------------------------------------ */

/* The daemon's options; the rest is daemon_run's (daemon.c). */
static int cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = { { "once", no_argument, NULL, 'o' },
		                              { "help", no_argument, NULL, 'h' },
		                              { NULL, 0, NULL, 0 } };
	struct config *cfg;
	bool once = false;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'o')
			once = true;
		else if (opt == 'h')
			return command_usage("run", stdout, EX_OK);
		else
			return command_usage("run", stderr, EX_USAGE);
	}
	if (optind < argc)
		return command_usage("run", stderr, EX_USAGE);
	cfg = runtime_config_new();
	if (!cfg) {
		fprintf(stderr, "pgeventd: out of memory\n");
		return EX_SOFTWARE;
	}
	if (!load_config(cli, cfg)) {
		runtime_config_free(cfg);
		return EX_CONFIG;
	}
	return daemon_run(cfg, cli->config_path, once);
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
			print_usage(stdout);
			return EX_OK;
		case 'V':
			return cmd_version(&cli, 0, NULL);
		default:
			print_usage(stderr);
			return EX_USAGE;
		}
	}
	if (!check && optind < argc) {
		c = find_command(argv[optind]);
		if (!c) {
			fprintf(stderr, "pgeventd: unknown command \"%s\"\n\n", argv[optind]);
			print_usage(stderr);
			return EX_USAGE;
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
			print_usage(stderr);
			return EX_USAGE;
		}
		return cmd_check_config(&cli, 1, av);
	}
	if (!c) {
		print_usage(stderr);
		return EX_USAGE;
	}
	return c->fn(&cli, argc, argv);
}
