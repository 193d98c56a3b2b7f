/* check_unit.h -- the suites of the unit-test runner (tests/check_unit.c). */
#ifndef PGEVENTD_CHECK_UNIT_H
#define PGEVENTD_CHECK_UNIT_H

#include <check.h>

#include "handlers/registry.h"

/* The registry row routing `event_type`, or NULL (for assertions). */
static inline const struct handler_entry *registry_lookup(const struct registry *r,
                                                          const char *event_type)
{
	int i = registry_index(r, event_type);

	return i < 0 ? NULL : r->entries[i];
}

Suite *backoff_suite(void);
Suite *conf_suite(void);
Suite *registry_suite(void);
Suite *log_suite(void);
Suite *metrics_suite(void);
Suite *httpd_suite(void);
Suite *buddy_suite(void);
Suite *sign_suite(void);
Suite *webhook_suite(void);
Suite *netaddr_suite(void);
Suite *routes_suite(void);
Suite *broker_suite(void);

#endif
