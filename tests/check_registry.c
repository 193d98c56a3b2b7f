/* check_registry.c -- routing event types to handlers of enabled packs. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <string.h>

#include "handlers/registry.h"
#include "src/conf.h"
#include "tests/check_unit.h"

START_TEST(test_registry_routes_core_types_always)
{
	struct config cfg;
	struct registry reg;
	char err[256];

	conf_init(&cfg);
	ck_assert(registry_build(&reg, (const char *const *)cfg.packs.items, cfg.packs.n, err,
	                         sizeof(err)));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "pgeventd.noop"));
	ck_assert_str_eq(registry_lookup(&reg, "pgeventd.probe")->name, "core_probe");
	ck_assert_ptr_null(registry_lookup(&reg, "pgeventd.nope"));
	ck_assert_ptr_null(registry_lookup(&reg, ""));
	registry_release(&reg);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_registry_routes_pack_types_only_when_enabled)
{
	struct config cfg;
	struct registry reg;
	char err[256];

	conf_init(&cfg);
	ck_assert(registry_build(&reg, (const char *const *)cfg.packs.items, cfg.packs.n, err,
	                         sizeof(err)));
	ck_assert_ptr_null(registry_lookup(&reg, "test.effect"));
	registry_release(&reg);

	cfg.packs.items = calloc(1, sizeof(char *));
	cfg.packs.items[0] = strdup("test");
	cfg.packs.n = 1;
	ck_assert(registry_build(&reg, (const char *const *)cfg.packs.items, cfg.packs.n, err,
	                         sizeof(err)));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "test.effect"));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "test.crash"));
	ck_assert_ptr_nonnull(registry_lookup(&reg, "pgeventd.log"));
	/* every enabled row is found by its own type */
	for (size_t i = 0; i < reg.n; i++)
		ck_assert_ptr_eq(registry_lookup(&reg, reg.entries[i]->event_type), reg.entries[i]);
	registry_release(&reg);
	conf_release(&cfg);
}
END_TEST

START_TEST(test_registry_every_row_has_a_description)
{
	for (const struct handler_pack *const *p = handler_packs; *p; p++)
		for (const struct handler_entry *e = (*p)->handlers; e->event_type; e++) {
			ck_assert_ptr_nonnull(e->fn);
			ck_assert_ptr_nonnull(e->description);
			ck_assert_int_gt(strlen(e->description), 0);
		}
}
END_TEST

START_TEST(test_registry_pack_migrations_are_ordered)
{
	for (const struct handler_pack *const *p = handler_packs; *p; p++) {
		int last = 0;

		for (const struct migration *m = (*p)->migrations; m && m->sql; m++) {
			ck_assert_int_gt(m->version, last);
			last = m->version;
		}
	}
}
END_TEST

Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("lookup");

	tcase_add_test(tc, test_registry_routes_core_types_always);
	tcase_add_test(tc, test_registry_routes_pack_types_only_when_enabled);
	tcase_add_test(tc, test_registry_every_row_has_a_description);
	tcase_add_test(tc, test_registry_pack_migrations_are_ordered);
	suite_add_tcase(s, tc);
	return s;
}
