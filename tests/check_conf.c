/* check_conf.c -- configuration loading: defaults, values, errors that name file, line, key. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/conf.h"
#include "src/db.h"
#include "tests/check_unit.h"

static char path[64];

/* Write `text` to a fresh temporary file; its name goes in `path`. */
static void write_conf(const char *text)
{
	int fd;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/pgeventd-conf-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* Load `text`; return whether it loaded, with the error in `err`. */
static bool load(const char *text, struct config *cfg, char *err, size_t errlen)
{
	bool ok;

	write_conf(text);
	conf_init(cfg);
	ok = conf_load(cfg, path, err, errlen);
	unlink(path);
	return ok;
}

START_TEST(test_conf_defaults_match_the_documented_ones)
{
	struct config cfg;

	conf_init(&cfg);
	ck_assert_ptr_null(cfg.conninfo);
	ck_assert_int_eq(cfg.workers, 2);
	ck_assert_int_eq(cfg.batch_size, 1000);
	ck_assert_int_eq(cfg.poll_interval_ms, 1000);
	ck_assert(cfg.listen);
	ck_assert_int_eq(cfg.max_attempts, 5);
	ck_assert_int_eq(cfg.backoff.base_ms, 1000);
	ck_assert(cfg.backoff.factor == 2.0);
	ck_assert_int_eq(cfg.backoff.cap_ms, 3600000);
	ck_assert(cfg.backoff.jitter == 0.1);
	ck_assert_int_eq(cfg.unknown_event_policy, UNKNOWN_DEAD_LETTER);
	ck_assert_int_eq(cfg.shutdown_timeout_ms, 25000);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	ck_assert_int_eq(cfg.log_format, LOG_FORMAT_LOGFMT);
	ck_assert_str_eq(cfg.health_listen, "127.0.0.1:8080");
	ck_assert_int_eq(cfg.relay.event_types.n, 0);
	ck_assert_int_eq(cfg.relay.concurrency, 64);
	ck_assert_int_eq(cfg.relay.connect_timeout_ms, 5000);
	ck_assert_int_eq(cfg.relay.backoff.base_ms, 1000);
	ck_assert(cfg.relay.backoff.jitter == 0.2);
	ck_assert_ptr_null(cfg.relay.ca_file);
	ck_assert(!cfg.relay.block_private_networks);
	ck_assert_int_eq(cfg.relay.disable_after_ms, 5 * 24 * 3600 * 1000);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_reads_every_kind_of_value)
{
	struct config cfg;
	char err[512] = "";

	ck_assert_msg(load("database = { conninfo = \"dbname=x\"; };\n"
	                   "workers = 4;\nbatch_size = 50;\nlisten = false;\n"
	                   "backoff = { base_ms = 200; factor = 3; jitter = 0.25; };\n"
	                   "unknown_event_policy = \"skip\";\n"
	                   "log = { level = \"debug\"; format = \"json\"; };\n"
	                   "packs = [\"test\"];\n",
	                   &cfg, err, sizeof(err)),
	              "%s", err);
	ck_assert_str_eq(cfg.conninfo, "dbname=x");
	ck_assert_int_eq(cfg.workers, 4);
	ck_assert_int_eq(cfg.batch_size, 50);
	ck_assert(!cfg.listen);
	ck_assert_int_eq(cfg.backoff.base_ms, 200);
	ck_assert(cfg.backoff.factor == 3.0);
	ck_assert(cfg.backoff.jitter == 0.25);
	ck_assert_int_eq(cfg.unknown_event_policy, UNKNOWN_SKIP);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_int_eq(cfg.log_format, LOG_FORMAT_JSON);
	ck_assert_int_eq(cfg.packs.n, 1);
	ck_assert_str_eq(cfg.packs.items[0], "test");
	conf_release(&cfg);
}
END_TEST

/* The message must start with FILE:LINE: KEY: */
static void assert_error(const char *text, int line, const char *key, const char *what)
{
	struct config cfg;
	char err[512] = "", want[256];

	ck_assert(!load(text, &cfg, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:%d: %s: ", path, line, key);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got \"%s\", want prefix \"%s\"", err,
	              want);
	ck_assert_msg(strstr(err, what) != NULL, "got \"%s\", want \"%s\" in it", err, what);
	conf_release(&cfg);
}

START_TEST(test_conf_out_of_range_names_line_and_key)
{
	assert_error("workers = 2;\n\nbatch_size = 0;\n", 3, "batch_size",
	             "must be between 1 and 10000, got 0");
}
END_TEST

START_TEST(test_conf_reads_an_integer_list)
{
	struct config cfg;
	char err[512] = "";

	ck_assert_msg(load("relay = { backoff = { schedule_ms = [1000, 5000, 30000]; }; };\n", &cfg,
	                   err, sizeof(err)),
	              "%s", err);
	ck_assert_int_eq(cfg.relay.schedule_ms.n, 3);
	ck_assert_int_eq(cfg.relay.schedule_ms.v[2], 30000);
	conf_release(&cfg);
	assert_error("relay = {\n backoff = { schedule_ms = (1000, \"x\"); };\n};\n", 2,
	             "relay.backoff.schedule_ms", "element 2 must be an integer");
	assert_error("relay = { backoff = { schedule_ms = [0]; }; };\n", 1,
	             "relay.backoff.schedule_ms",
	             "element 1 must be between 1 and 86400000, got 0");
}
END_TEST

START_TEST(test_conf_wrong_type_names_line_and_key)
{
	assert_error("listen = \"yes\";\n", 1, "listen", "must be true or false, got a string");
	assert_error("workers = 2;\n\nbatch_size = \"many\";\n", 3, "batch_size",
	             "must be an integer between 1 and 10000, got a string");
	assert_error("backoff = { factor = true; };\n", 1, "backoff.factor",
	             "must be a number, got a boolean");
	assert_error("log = {\n level = 3;\n};\n", 2, "log.level", "must be a string");
}
END_TEST

START_TEST(test_conf_unknown_key_is_an_error)
{
	assert_error("workers = 2;\nbatchsize = 10;\n", 2, "batchsize", "unknown key");
	assert_error("backoff = { base = 10; };\n", 1, "backoff.base", "unknown key");
}
END_TEST

START_TEST(test_conf_bad_enum_lists_the_choices)
{
	assert_error("unknown_event_policy = \"drop\";\n", 1, "unknown_event_policy",
	             "must be one of dead_letter, skip, got \"drop\"");
}
END_TEST

START_TEST(test_conf_unknown_pack_is_an_error)
{
	assert_error("packs = [\"nope\"];\n", 1, "packs", "unknown pack \"nope\"");
}
END_TEST

START_TEST(test_conf_syntax_error_names_the_line)
{
	struct config cfg;
	char err[512] = "", want[128];

	ck_assert(!load("workers = 2;\nbatch_size = ;\n", &cfg, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:2: syntax error", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got \"%s\"", err);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_missing_file_is_an_error)
{
	struct config cfg;
	char err[512] = "";

	conf_init(&cfg);
	ck_assert(!conf_load(&cfg, "/nonexistent/pgeventd.conf", err, sizeof(err)));
	ck_assert_msg(strstr(err, "/nonexistent/pgeventd.conf: cannot read") == err, "%s", err);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_cap_below_base_is_an_error)
{
	struct config cfg;
	char err[512] = "";

	ck_assert(!load("backoff = { base_ms = 5000; cap_ms = 1000; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "backoff.cap_ms: must not be below backoff.base_ms"), "%s", err);
	conf_release(&cfg);
}
END_TEST

/* libconfig 1.5 wraps an integer past 32 bits: 4294967297 would read as 1. */
START_TEST(test_conf_oversized_integer_is_refused_as_written)
{
	struct config cfg;
	char err[512] = "";

	assert_error("workers = 4294967297;\n", 1, "workers",
	             "must be between 1 and 256, got 4294967297");
	assert_error("\nbatch_size = 4294967301;\n", 2, "batch_size",
	             "must be between 1 and 10000, got 4294967301");
	assert_error("batch_size = 99999999999;\n", 1, "batch_size",
	             "must be between 1 and 10000, got 99999999999");
	assert_error("batch_size = 99999999999999999999999;\n", 1, "batch_size",
	             "must be between 1 and 10000, got 99999999999999999999999");
	assert_error("retention = { batch_size = 0x100000001; };\n", 1, "retention.batch_size",
	             "got 0x100000001");
	assert_error("backoff = { factor = 4294967297; };\n", 1, "backoff.factor",
	             "must be between 1 and 100, got 4294967297");
	assert_error("relay = { backoff = { schedule_ms = [1000,\n 4294967297]; }; };\n", 2,
	             "relay.backoff.schedule_ms",
	             "element 2 must be between 1 and 86400000, got 4294967297");
	/* values that fit still load, with or without the L suffix */
	ck_assert_msg(load("batch_size = 5000L;\nbackoff = { cap_ms = 604800000; };\n"
	                   "relay = { backoff = { schedule_ms = [5, 0x10]; }; };\n",
	                   &cfg, err, sizeof(err)),
	              "%s", err);
	ck_assert_int_eq(cfg.batch_size, 5000);
	ck_assert_int_eq(cfg.backoff.cap_ms, 604800000);
	ck_assert_int_eq(cfg.relay.schedule_ms.v[1], 16);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_refuses_a_directory_and_a_fifo)
{
	struct config cfg;
	char dir[] = "/tmp/pgeventd-conf-dir-XXXXXX", fifo[96], err[512] = "";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	conf_init(&cfg);
	ck_assert(!conf_load(&cfg, dir, err, sizeof(err)));
	ck_assert_msg(strstr(err, ": cannot read the file: it is a directory, not a regular file"),
	              "%s", err);
	conf_release(&cfg);

	/* a FIFO with no writer: opening it for reading would block forever */
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	conf_init(&cfg);
	ck_assert(!conf_load(&cfg, fifo, err, sizeof(err)));
	ck_assert_msg(strstr(err, ": cannot read the file: it is a FIFO, not a regular file"), "%s",
	              err);
	conf_release(&cfg);
	unlink(fifo);
	rmdir(dir);
}
END_TEST

START_TEST(test_conf_unclosed_brace_says_where_it_opened)
{
	struct config cfg;
	char err[512] = "", want[256];

	ck_assert(!load("workers = 2;\nbackoff = {\n  base_ms = 10;\n\nbatch_size = 5;\n", &cfg,
	                err, sizeof(err)));
	snprintf(want, sizeof(want),
	         "%s:6: syntax error: unclosed '{' of \"backoff\" opened at line 2", path);
	ck_assert_str_eq(err, want);
	conf_release(&cfg);
	ck_assert(!load("packs = [\"test\"\nworkers = 2;\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "syntax error: unclosed '[' of \"packs\" opened at line 1"), "%s",
	              err);
	ck_assert_msg(!strstr(err, "syntax error: syntax error"), "%s", err);
	conf_release(&cfg);
}
END_TEST

/* What run would refuse to bind, check-config must refuse to pass. */
START_TEST(test_conf_health_listen_must_be_an_address)
{
	static const char *const good[] = {
		"",           "127.0.0.1:0",       ":8080",          "*:9090",
		"[::1]:8080", "[fe80::1%eth0]:80", "localhost:8080", "health.example.com:80"
	};
	struct config cfg;
	char err[512] = "", text[128];

	assert_error("workers = 2;\nhealth = {\n listen = \"127.0.0.1:83763\";\n};\n", 3,
	             "health.listen", "port 83763 is out of range (0 to 65535)");
	assert_error("health = { listen = \"999.1.1.1:18228\"; };\n", 1, "health.listen",
	             "\"999.1.1.1\" is not an IPv4 address");
	assert_error("health = { listen = \"127.0.0.1:000080\"; };\n", 1, "health.listen",
	             "out of range");
	assert_error("health = { listen = \"::1:8080\"; };\n", 1, "health.listen",
	             "an IPv6 address goes in brackets");
	assert_error("health = { listen = \"[::g]:80\"; };\n", 1, "health.listen",
	             "\"[::g]\" is not");
	assert_error("health = { listen = \"localhost\"; };\n", 1, "health.listen",
	             "must be host:port, [ipv6]:port, :port or *:port");
	assert_error("health = { listen = \"bad_name:80\"; };\n", 1, "health.listen",
	             "\"bad_name\" is not");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "health = { listen = \"%s\"; };\n", good[i]);
		ck_assert_msg(load(text, &cfg, err, sizeof(err)), "%s: %s", good[i], err);
		ck_assert_str_eq(cfg.health_listen, good[i]);
		conf_release(&cfg);
	}
}
END_TEST

struct seen {
	char conninfo[512];
	int keys;
};

static void visit(void *arg, const char *key, const char *value, const char *def, bool reloadable,
                  const char *help)
{
	struct seen *s = arg;

	(void)def;
	(void)reloadable;
	ck_assert_ptr_nonnull(help);
	s->keys++;
	if (strcmp(key, "database.conninfo") == 0)
		snprintf(s->conninfo, sizeof(s->conninfo), "%s", value);
}

START_TEST(test_conf_visit_redacts_the_password)
{
	struct config cfg;
	struct seen s = { "", 0 };
	char err[512] = "";

	ck_assert(load("database = { conninfo = \"postgresql://app:s3cr3t@db.example/ev\"; };\n",
	               &cfg, err, sizeof(err)));
	conf_visit(&cfg, visit, &s);
	ck_assert_int_gt(s.keys, 10);
	ck_assert_msg(strstr(s.conninfo, "s3cr3t") == NULL, "%s", s.conninfo);
	ck_assert_msg(strstr(s.conninfo, "password=***") != NULL, "%s", s.conninfo);
	ck_assert_msg(strstr(s.conninfo, "host=db.example") != NULL, "%s", s.conninfo);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_visit_redacts_the_ssl_key_passphrase)
{
	struct config cfg;
	struct seen s = { "", 0 };
	char err[512] = "";

	ck_assert(load("database = { conninfo = \"host=db sslpassword=k3yp4ss password=pw9\"; };\n",
	               &cfg, err, sizeof(err)));
	conf_visit(&cfg, visit, &s);
	ck_assert_msg(strstr(s.conninfo, "k3yp4ss") == NULL, "%s", s.conninfo);
	ck_assert_msg(strstr(s.conninfo, "pw9") == NULL, "%s", s.conninfo);
	ck_assert_msg(strstr(s.conninfo, "sslpassword=***") != NULL, "%s", s.conninfo);
	conf_release(&cfg);
}
END_TEST

/* libpq hands a dbname holding a URI to the server as it is. */
START_TEST(test_conf_visit_redacts_a_password_in_a_dbname_uri)
{
	struct config cfg;
	struct seen s = { "", 0 };
	char err[512] = "";

	ck_assert(load("database = { conninfo = \"host=db dbname=postgresql://app:n3st%40d@h/ev\"; "
	               "};\n",
	               &cfg, err, sizeof(err)));
	conf_visit(&cfg, visit, &s);
	ck_assert_msg(strstr(s.conninfo, "n3st") == NULL, "%s", s.conninfo);
	ck_assert_msg(strstr(s.conninfo, "dbname=postgresql://app:***@h/ev"), "%s", s.conninfo);
	conf_release(&cfg);
}
END_TEST

/* What the server says about such a database quotes the URI. */
START_TEST(test_db_redact_cuts_every_password_out_of_a_message)
{
	char out[256];

	db_redact("dbname=postgresql://app:n3st%40d@h/ev",
	          "FATAL:  database \"postgresql://app:n3st%40d@h/ev\" does not exist\n", out,
	          sizeof(out));
	ck_assert_str_eq(out, "FATAL:  database \"postgresql://app:***@h/ev\" does not exist");
	db_redact("postgresql://u:p%41ss@h/d?sslpassword=kp", "x p%41ss y pAss z kp", out,
	          sizeof(out));
	ck_assert_str_eq(out, "x *** y *** z ***");
	db_redact("host=h dbname='password=inner1 host=x'", "inner1 at h", out, sizeof(out));
	ck_assert_str_eq(out, "*** at h");
	db_redact(NULL, "nothing\nto hide", out, sizeof(out));
	ck_assert_str_eq(out, "nothing to hide");
}
END_TEST

/* libpq quotes a malformed connection string in its error message. */
START_TEST(test_db_connect_error_never_quotes_a_bad_conninfo)
{
	char err[512] = "";

	ck_assert_ptr_null(
	    db_connect("postgresql://u:s3cr%zzet@localhost/db", "t", err, sizeof(err)));
	ck_assert_msg(strstr(err, "s3cr") == NULL, "%s", err);
	ck_assert_msg(strstr(err, "invalid connection string") != NULL, "%s", err);
}
END_TEST

/* etc/pgeventd.conf loads, and mentions every key the code reads. */
static void mention(void *arg, const char *key, const char *value, const char *def, bool reloadable,
                    const char *help)
{
	const char *text = arg;
	const char *leaf = strrchr(key, '.') ? strrchr(key, '.') + 1 : key;
	char want[128];

	(void)value;
	(void)def;
	(void)reloadable;
	(void)help;
	snprintf(want, sizeof(want), "# %s = ", leaf);
	ck_assert_msg(strstr(text, want) != NULL, "etc/pgeventd.conf does not document %s", key);
}

START_TEST(test_conf_sample_file_documents_every_key)
{
	struct config cfg;
	char err[512] = "", file[1024], *text;
	FILE *f;
	long n;

	snprintf(file, sizeof(file), "%s/etc/pgeventd.conf", TOP_SRCDIR);
	conf_init(&cfg);
	ck_assert_msg(conf_load(&cfg, file, err, sizeof(err)), "%s", err);
	f = fopen(file, "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	ck_assert_int_eq(fread(text, 1, (size_t)n, f), n);
	fclose(f);
	conf_visit(&cfg, mention, text);
	free(text);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_conninfo_falls_back_to_database_url)
{
	struct config cfg;

	conf_init(&cfg);
	setenv("DATABASE_URL", "postgresql:///fromenv", 1);
	ck_assert_str_eq(conf_conninfo(&cfg), "postgresql:///fromenv");
	unsetenv("DATABASE_URL");
	ck_assert_str_eq(conf_conninfo(&cfg), "");
	conf_release(&cfg);
}
END_TEST

START_TEST(test_conf_durations_parse_and_print_back)
{
	long long ms = -1;
	char buf[32];

	ck_assert(conf_parse_duration("30d", &ms));
	ck_assert_int_eq(ms, 30LL * 24 * 3600 * 1000);
	ck_assert(conf_parse_duration("1h30m", &ms));
	ck_assert_int_eq(ms, 90LL * 60 * 1000);
	ck_assert(conf_parse_duration("500ms", &ms));
	ck_assert_int_eq(ms, 500);
	ck_assert(conf_parse_duration("2w", &ms));
	ck_assert_int_eq(ms, 14LL * 24 * 3600 * 1000);
	ck_assert(conf_parse_duration("", &ms) && ms == 0);
	ck_assert(conf_parse_duration("0", &ms) && ms == 0);
	ck_assert(!conf_parse_duration("30", &ms));
	ck_assert(!conf_parse_duration("30x", &ms));
	ck_assert(!conf_parse_duration("d", &ms));
	ck_assert(!conf_parse_duration("-1d", &ms));
	ck_assert(!conf_parse_duration("1 d", &ms));
	ck_assert(!conf_parse_duration("99999999999999999999d", &ms));
	ck_assert(!conf_parse_duration("999999999999w", &ms));
	conf_format_duration(30LL * 24 * 3600 * 1000, buf, sizeof(buf));
	ck_assert_str_eq(buf, "30d");
	conf_format_duration(90LL * 60 * 1000, buf, sizeof(buf));
	ck_assert_str_eq(buf, "90m");
	conf_format_duration(1500, buf, sizeof(buf));
	ck_assert_str_eq(buf, "1500ms");
	conf_format_duration(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_conf_retention_keys_load_and_bad_ones_name_the_key)
{
	struct config cfg;
	char err[512] = "";

	ck_assert_msg(load("retention = { processed_after = \"30d\"; interval = \"1s\";\n"
	                   "  delivery_attempts_after = \"14d\"; batch_size = 50;\n"
	                   "  deliveries_after = \"1w\"; };\n",
	                   &cfg, err, sizeof(err)),
	              "%s", err);
	ck_assert_int_eq(cfg.retention.processed_after_ms, 30LL * 86400000);
	ck_assert_int_eq(cfg.retention.delivery_attempts_after_ms, 14LL * 86400000);
	ck_assert_int_eq(cfg.retention.deliveries_after_ms, 7LL * 86400000);
	ck_assert_int_eq(cfg.retention.interval_ms, 1000);
	ck_assert_int_eq(cfg.retention.batch_size, 50);
	conf_release(&cfg);

	ck_assert(
	    !load("retention = {\n processed_after = \"30 days\"; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, ":2: retention.processed_after: \"30 days\" is not a duration"),
	              "%s", err);
	conf_release(&cfg);
	ck_assert(
	    !load("retention = {\n deliveries_after = \"a month\"; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, ":2: retention.deliveries_after: \"a month\" is not a duration"),
	              "%s", err);
	conf_release(&cfg);
	ck_assert(!load("retention = { processed_after = 30; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "retention.processed_after: must be a duration string"), "%s",
	              err);
	conf_release(&cfg);
	ck_assert(
	    !load("retention = { processed_after = \"1000000w\"; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(
	    strstr(err, "retention.processed_after: must be at most 36500d, got \"1000000w\""),
	    "%s", err);
	conf_release(&cfg);
	ck_assert(!load("retention = { interval = \"10ms\"; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "retention.interval: must be between 1s and 31d"), "%s", err);
	conf_release(&cfg);
	ck_assert(!load("retention = { interval = \"\"; };\n", &cfg, err, sizeof(err)));
	ck_assert_msg(strstr(err, "retention.interval: must not be empty or 0"), "%s", err);
	conf_release(&cfg);

	conf_init(&cfg);
	ck_assert_int_eq(cfg.retention.processed_after_ms, 0);
	ck_assert_int_eq(cfg.retention.interval_ms, 600000);
	conf_release(&cfg);
}
END_TEST

static char reload_log[2048];

static void note_change(const char *key, const char *why)
{
	size_t n = strlen(reload_log);

	snprintf(reload_log + n, sizeof(reload_log) - n, "%s=%s;", key, why ? "kept" : "applied");
}

START_TEST(test_conf_reload_applies_live_keys_and_keeps_restart_ones)
{
	struct config cur, next;
	char err[512] = "";

	ck_assert(load("workers = 2; batch_size = 10; relay = { event_types = [\"a.*\"]; };\n",
	               &cur, err, sizeof(err)));
	ck_assert(load("workers = 8; batch_size = 500; max_attempts = 9;\n"
	               "health = { listen = \"127.0.0.1:9999\"; };\n"
	               "relay = { event_types = [\"b.*\"]; concurrency = 8; };\n"
	               "retention = { processed_after = \"7d\"; };\n",
	               &next, err, sizeof(err)));
	reload_log[0] = '\0';
	ck_assert(conf_keep_restart_keys(&next, &cur, note_change));
	/* restart-only keys are back to their running values */
	ck_assert_int_eq(next.workers, 2);
	ck_assert_str_eq(next.health_listen, "127.0.0.1:8080");
	ck_assert_int_eq(next.relay.concurrency, 64);
	/* live ones are the file's */
	ck_assert_int_eq(next.batch_size, 500);
	ck_assert_int_eq(next.max_attempts, 9);
	ck_assert_str_eq(next.relay.event_types.items[0], "b.*");
	ck_assert_int_eq(next.retention.processed_after_ms, 7LL * 86400000);
	ck_assert_msg(strstr(reload_log, "workers=kept;") &&
	                  strstr(reload_log, "health.listen=kept;") &&
	                  strstr(reload_log, "relay.concurrency=kept;") &&
	                  strstr(reload_log, "batch_size=applied;") &&
	                  strstr(reload_log, "relay.event_types=applied;") &&
	                  strstr(reload_log, "retention.processed_after=applied;"),
	              "%s", reload_log);
	ck_assert_msg(!strstr(reload_log, "poll_interval_ms"), "unchanged key reported: %s",
	              reload_log);
	conf_release(&next);

	/* Turning the relay off (or on) needs a restart: its thread starts with the daemon. */
	ck_assert(load("relay = { event_types = []; };\n", &next, err, sizeof(err)));
	reload_log[0] = '\0';
	ck_assert(conf_keep_restart_keys(&next, &cur, note_change));
	ck_assert_int_eq(next.relay.event_types.n, 1);
	ck_assert_str_eq(next.relay.event_types.items[0], "a.*");
	ck_assert_msg(strstr(reload_log, "relay.event_types=kept;"), "%s", reload_log);
	conf_release(&next);
	conf_release(&cur);
}
END_TEST

/* The rendered conninfo hides the password: a change of password alone
 * must still be seen, and kept back until a restart. */
START_TEST(test_conf_reload_sees_a_password_only_change)
{
	struct config cur, next;
	char err[512] = "";

	ck_assert(
	    load("database = { conninfo = \"host=db password=old\"; };\n", &cur, err, sizeof(err)));
	ck_assert(load("database = { conninfo = \"host=db password=new\"; };\n", &next, err,
	               sizeof(err)));
	reload_log[0] = '\0';
	ck_assert(conf_keep_restart_keys(&next, &cur, note_change));
	ck_assert_str_eq(reload_log, "database.conninfo=kept;");
	ck_assert_str_eq(next.conninfo, "host=db password=old");
	conf_release(&next);
	conf_release(&cur);
}
END_TEST

Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, test_conf_defaults_match_the_documented_ones);
	tcase_add_test(tc, test_conf_reads_every_kind_of_value);
	tcase_add_test(tc, test_conf_out_of_range_names_line_and_key);
	tcase_add_test(tc, test_conf_wrong_type_names_line_and_key);
	tcase_add_test(tc, test_conf_unknown_key_is_an_error);
	tcase_add_test(tc, test_conf_bad_enum_lists_the_choices);
	tcase_add_test(tc, test_conf_unknown_pack_is_an_error);
	tcase_add_test(tc, test_conf_syntax_error_names_the_line);
	tcase_add_test(tc, test_conf_missing_file_is_an_error);
	tcase_add_test(tc, test_conf_cap_below_base_is_an_error);
	tcase_add_test(tc, test_conf_visit_redacts_the_password);
	tcase_add_test(tc, test_conf_reads_an_integer_list);
	tcase_add_test(tc, test_conf_sample_file_documents_every_key);
	tcase_add_test(tc, test_conf_visit_redacts_the_ssl_key_passphrase);
	tcase_add_test(tc, test_db_connect_error_never_quotes_a_bad_conninfo);
	tcase_add_test(tc, test_conf_conninfo_falls_back_to_database_url);
	tcase_add_test(tc, test_conf_durations_parse_and_print_back);
	tcase_add_test(tc, test_conf_retention_keys_load_and_bad_ones_name_the_key);
	tcase_add_test(tc, test_conf_reload_applies_live_keys_and_keeps_restart_ones);
	tcase_add_test(tc, test_conf_reload_sees_a_password_only_change);
	tcase_add_test(tc, test_conf_oversized_integer_is_refused_as_written);
	tcase_add_test(tc, test_conf_refuses_a_directory_and_a_fifo);
	tcase_add_test(tc, test_conf_unclosed_brace_says_where_it_opened);
	tcase_add_test(tc, test_conf_health_listen_must_be_an_address);
	tcase_add_test(tc, test_conf_visit_redacts_a_password_in_a_dbname_uri);
	tcase_add_test(tc, test_db_redact_cuts_every_password_out_of_a_message);
	suite_add_tcase(s, tc);
	return s;
}
