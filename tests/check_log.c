/* check_log.c -- log lines: logfmt quoting and JSON lines. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "src/log.h"
#include "tests/check_unit.h"

/* Run one log call with stderr sent to a temporary file; return its text. */
static char *capture(void (*fn)(void))
{
	char tmpl[] = "/tmp/pgeventd-log-XXXXXX";
	int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO);
	static char buf[4096];
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(tmpl);
	return buf;
}

static void log_one(void)
{
	log_kv(LOG_WARNING, "event handled", "event_id", "abc", "absent", (const char *)NULL,
	       "error", "bad \"x\"\nnext", "empty", "", NULL);
}

static void log_debug(void)
{
	log_kv(LOG_DEBUG, "hidden", NULL);
}

START_TEST(test_log_logfmt_quotes_what_needs_it)
{
	char *out;

	log_configure(LOG_INFO, LOG_FORMAT_LOGFMT);
	out = capture(log_one);
	ck_assert_msg(strstr(out, " level=warning msg=\"event handled\" event_id=abc "
	                          "error=\"bad \\\"x\\\"\\nnext\" empty=\"\"\n"),
	              "%s", out);
	ck_assert_msg(strncmp(out, "ts=", 3) == 0, "%s", out);
	ck_assert_msg(!strstr(out, "absent"), "a NULL field is left out: %s", out);
}
END_TEST

START_TEST(test_log_json_is_one_object_per_line)
{
	char *out;
	json_t *o;
	json_error_t e;

	log_configure(LOG_INFO, LOG_FORMAT_JSON);
	out = capture(log_one);
	log_configure(LOG_INFO, LOG_FORMAT_LOGFMT);
	ck_assert_int_eq(strchr(out, '\n') - out, (long)strlen(out) - 1);
	o = json_loads(out, 0, &e);
	ck_assert_msg(o != NULL, "%s: %s", out, e.text);
	ck_assert_str_eq(json_string_value(json_object_get(o, "level")), "warning");
	ck_assert_str_eq(json_string_value(json_object_get(o, "error")), "bad \"x\"\nnext");
	json_decref(o);
}
END_TEST

START_TEST(test_log_below_threshold_prints_nothing)
{
	log_configure(LOG_INFO, LOG_FORMAT_LOGFMT);
	ck_assert_str_eq(capture(log_debug), "");
}
END_TEST

Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("format");

	tcase_add_test(tc, test_log_logfmt_quotes_what_needs_it);
	tcase_add_test(tc, test_log_json_is_one_object_per_line);
	tcase_add_test(tc, test_log_below_threshold_prints_nothing);
	suite_add_tcase(s, tc);
	return s;
}
