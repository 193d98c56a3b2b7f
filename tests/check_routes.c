/* check_routes.c -- SQL routes: reading `routes`, matching, SQLSTATE to outcome. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/conf.h"
#include "src/routes.h"
#include "tests/check_unit.h"

/* Load `text` from a temporary file into cfg; the error in err. */
static bool load_routes(const char *text, struct config *cfg, char *err, size_t errlen, char *path,
                        size_t pathlen)
{
	int fd;
	FILE *f;
	bool ok;

	snprintf(path, pathlen, "/tmp/pgeventd-routes-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	conf_init(cfg);
	ok = conf_load(cfg, path, err, errlen);
	unlink(path);
	return ok;
}

START_TEST(test_routes_first_matching_pattern_takes_the_event)
{
	struct config cfg;
	char err[512], path[64];
	const char *pattern = NULL;
	const struct route *r;

	ck_assert_msg(load_routes("routes = (\n"
	                          "  { events = [\"intro.completed\"]; call = \"app.exact\"; },\n"
	                          "  { events = [\"user.*\", \"intro.*\"]; call = \"app.any\"; }\n"
	                          ");\n",
	                          &cfg, err, sizeof(err), path, sizeof(path)),
	              "%s", err);
	ck_assert_int_eq(cfg.routes.n, 2);
	r = routes_match(&cfg.routes, "intro.completed", &pattern);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->call, "app.exact");
	ck_assert_str_eq(pattern, "intro.completed");
	r = routes_match(&cfg.routes, "intro.declined", &pattern);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->call, "app.any");
	ck_assert_str_eq(pattern, "intro.*");
	ck_assert_str_eq(r->entry.name, "sql:app.any");
	ck_assert_int_eq(r->line, 3);
	ck_assert_ptr_null(routes_match(&cfg.routes, "order.created", NULL));
	/* Not resolved: no function to call yet. */
	ck_assert_ptr_null(r->entry.fn);
	conf_release(&cfg);
	ck_assert_int_eq(cfg.routes.n, 0);
}
END_TEST

START_TEST(test_routes_call_must_be_a_bare_function_name)
{
	static const char *const bad[] = {
		"app.f(events)", "app.f; DROP TABLE events", "a.b.c",  "",
		"app.",          "\"unterminated",           "f -- x",
	};
	static const char *const good[] = { "f", "app.f", "\"My Schema\".\"odd \"\"name\"\"\"",
		                            "app.on_intro$2" };
	struct config cfg;
	char text[256], err[512], path[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "routes = ( { events = [\"a\"]; call = \"%s\"; } );\n",
		         bad[i]);
		/* Escape embedded quotes for libconfig. */
		if (strchr(bad[i], '"'))
			snprintf(
			    text, sizeof(text),
			    "routes = ( { events = [\"a\"]; call = \"\\\"unterminated\"; } );\n");
		ck_assert_msg(!load_routes(text, &cfg, err, sizeof(err), path, sizeof(path)),
		              "accepted %s", bad[i]);
		ck_assert_msg(strstr(err, "routes[1].call: ") != NULL, "%s", err);
		conf_release(&cfg);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char esc[128];
		size_t n = 0;

		for (const char *c = good[i]; *c && n + 2 < sizeof(esc); c++) {
			if (*c == '"')
				esc[n++] = '\\';
			esc[n++] = *c;
		}
		esc[n] = '\0';
		snprintf(text, sizeof(text), "routes = ( { events = [\"a\"]; call = \"%s\"; } );\n",
		         esc);
		ck_assert_msg(load_routes(text, &cfg, err, sizeof(err), path, sizeof(path)),
		              "%s: %s", good[i], err);
		conf_release(&cfg);
	}
}
END_TEST

START_TEST(test_routes_and_c_handler_for_one_type_is_an_error_naming_both)
{
	struct config cfg;
	char err[512], path[64], want[128];

	ck_assert(!load_routes("workers = 1;\nroutes = (\n"
	                       "  { events = [\"pgeventd.*\"]; call = \"app.mine\"; }\n);\n",
	                       &cfg, err, sizeof(err), path, sizeof(path)));
	snprintf(want, sizeof(want), "%s:3: routes[1].events: event type pgeventd.", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
	ck_assert_msg(strstr(err, "C handler core_") && strstr(err, "(pack core)") &&
	                  strstr(err, "SQL route app.mine"),
	              "%s", err);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_routes_pattern_written_twice_is_an_error)
{
	struct config cfg;
	char err[512], path[64];

	ck_assert(!load_routes("routes = (\n  { events = [\"a.b\"]; call = \"f\"; },\n"
	                       "  { events = [\"c\", \"a.b\"]; call = \"g\"; }\n);\n",
	                       &cfg, err, sizeof(err), path, sizeof(path)));
	ck_assert_msg(strstr(err, ":3: routes[2].events: pattern \"a.b\" is also in routes[1] "
	                          "(line 2, call f)"),
	              "%s", err);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_routes_malformed_routes_name_the_key)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "routes = 1;\n", ":1: routes: must be a list" },
		{ "routes = ( 1 );\n", ":1: routes[1]: must be a group" },
		{ "routes = ( { call = \"f\"; } );\n", "routes[1].events: missing" },
		{ "routes = ( { events = [\"a\"]; } );\n", "routes[1].call: missing" },
		{ "routes = ( { events = []; call = \"f\"; } );\n",
		  "routes[1].events: must be a non-empty" },
		{ "routes = ( { events = [\"\"]; call = \"f\"; } );\n",
		  "routes[1].events: element 1 is empty" },
		{ "routes = ( { events = [\"a\"]; call = \"f\"; fn = 1; } );\n",
		  "routes[1].fn: unknown key" },
	};
	struct config cfg;
	char err[512], path[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert(!load_routes(cases[i].text, &cfg, err, sizeof(err), path, sizeof(path)));
		ck_assert_msg(strstr(err, cases[i].want), "%s: got %s", cases[i].text, err);
		conf_release(&cfg);
	}
}
END_TEST

START_TEST(test_routes_outcome_by_sqlstate)
{
	static const char *const retry[] = { "PGR01", "40001", "40P01", "55P03", "57014", "53100",
		                             "53200", "08006", "08003", "42883", "42501", "3F000",
		                             "42P01", "42703", "58030", "58P01", "XX000" };
	static const char *const fail[] = { "22023", "23505", "P0001", "40003",
		                            "57P01", "42601", "0A000", "XX001" };

	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		ck_assert_msg(routes_outcome(retry[i]) == HANDLER_RETRY, "%s", retry[i]);
	for (size_t i = 0; i < sizeof(fail) / sizeof(fail[0]); i++)
		ck_assert_msg(routes_outcome(fail[i]) == HANDLER_FAIL, "%s", fail[i]);
	ck_assert(routes_outcome(NULL) == HANDLER_RETRY);
}
END_TEST

START_TEST(test_routes_same_compares_patterns_and_calls)
{
	struct config a, b;
	char err[512], path[64];
	const char *one = "routes = ( { events = [\"a\", \"b\"]; call = \"f\"; } );\n";

	ck_assert(load_routes(one, &a, err, sizeof(err), path, sizeof(path)));
	ck_assert(load_routes(one, &b, err, sizeof(err), path, sizeof(path)));
	ck_assert(routes_same(&a.routes, &b.routes));
	conf_release(&b);
	ck_assert(load_routes("routes = ( { events = [\"a\", \"b\"]; call = \"g\"; } );\n", &b, err,
	                      sizeof(err), path, sizeof(path)));
	ck_assert(!routes_same(&a.routes, &b.routes));
	conf_release(&a);
	conf_release(&b);
}
END_TEST

Suite *routes_suite(void)
{
	Suite *s = suite_create("routes");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_routes_first_matching_pattern_takes_the_event);
	tcase_add_test(tc, test_routes_call_must_be_a_bare_function_name);
	tcase_add_test(tc, test_routes_and_c_handler_for_one_type_is_an_error_naming_both);
	tcase_add_test(tc, test_routes_pattern_written_twice_is_an_error);
	tcase_add_test(tc, test_routes_malformed_routes_name_the_key);
	tcase_add_test(tc, test_routes_outcome_by_sqlstate);
	tcase_add_test(tc, test_routes_same_compares_patterns_and_calls);
	suite_add_tcase(s, tc);
	return s;
}
