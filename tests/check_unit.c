/* check_unit.c -- runs every unit-test suite; exit status is the verdict. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdlib.h>

#include "handlers/registry.h"
#include "tests/check_unit.h"

int main(void)
{
	SRunner *sr;
	int failed;

	registry_link_packs(handler_packs);
	sr = srunner_create(backoff_suite());
	srunner_add_suite(sr, conf_suite());
	srunner_add_suite(sr, registry_suite());
	srunner_add_suite(sr, log_suite());
	srunner_add_suite(sr, metrics_suite());
	srunner_add_suite(sr, httpd_suite());
	srunner_add_suite(sr, buddy_suite());
	srunner_add_suite(sr, sign_suite());
	srunner_add_suite(sr, webhook_suite());
	srunner_add_suite(sr, netaddr_suite());
	srunner_add_suite(sr, routes_suite());
	srunner_add_suite(sr, broker_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
