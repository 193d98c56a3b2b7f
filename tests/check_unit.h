/* check_unit.h -- the suites of the unit-test runner (tests/check_unit.c). */
#ifndef PGEVENTD_CHECK_UNIT_H
#define PGEVENTD_CHECK_UNIT_H

#include <check.h>

Suite *backoff_suite(void);
Suite *conf_suite(void);
Suite *registry_suite(void);
Suite *log_suite(void);
Suite *metrics_suite(void);
Suite *httpd_suite(void);
Suite *buddy_suite(void);
Suite *sign_suite(void);
Suite *webhook_suite(void);

#endif
