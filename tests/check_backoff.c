/* check_backoff.c -- the retry delay schedule. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "src/backoff.h"
#include "tests/check_unit.h"

static const struct backoff_policy def = { 1000, 2.0, 3600000, 0.1 };

START_TEST(test_backoff_doubles_from_base_without_jitter)
{
	/* u = 0.5 is the middle of the jitter range: no spread */
	ck_assert_int_eq(backoff_delay_ms(&def, 1, 0.5), 1000);
	ck_assert_int_eq(backoff_delay_ms(&def, 2, 0.5), 2000);
	ck_assert_int_eq(backoff_delay_ms(&def, 3, 0.5), 4000);
	ck_assert_int_eq(backoff_delay_ms(&def, 5, 0.5), 16000);
}
END_TEST

START_TEST(test_backoff_stops_at_cap)
{
	ck_assert_int_eq(backoff_delay_ms(&def, 13, 0.5), 3600000);
	ck_assert_int_eq(backoff_delay_ms(&def, 1000000, 0.5), 3600000);
}
END_TEST

START_TEST(test_backoff_jitter_stays_within_bounds)
{
	ck_assert_int_eq(backoff_delay_ms(&def, 1, 0.0), 900);
	ck_assert_int_ge(backoff_delay_ms(&def, 1, 0.999999), 1099);
	ck_assert_int_le(backoff_delay_ms(&def, 1, 0.999999), 1100);
	for (int i = 0; i < 1000; i++) {
		long long d = backoff_delay_ms(&def, 3, backoff_random());
		ck_assert_int_ge(d, 3600);
		ck_assert_int_le(d, 4400);
	}
}
END_TEST

START_TEST(test_backoff_bad_inputs_are_clamped)
{
	ck_assert_int_eq(backoff_delay_ms(&def, 0, 0.5), 1000);
	ck_assert_int_eq(backoff_delay_ms(&def, -5, 0.5), 1000);
	ck_assert_int_eq(backoff_delay_ms(&def, 1, -1.0), 900);
	ck_assert_int_eq(backoff_delay_ms(&def, 1, 7.0), 1100);
}
END_TEST

START_TEST(test_backoff_random_is_in_unit_interval)
{
	for (int i = 0; i < 10000; i++) {
		double u = backoff_random();
		ck_assert(u >= 0.0 && u < 1.0);
	}
}
END_TEST

Suite *backoff_suite(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc = tcase_create("delay");

	tcase_add_test(tc, test_backoff_doubles_from_base_without_jitter);
	tcase_add_test(tc, test_backoff_stops_at_cap);
	tcase_add_test(tc, test_backoff_jitter_stays_within_bounds);
	tcase_add_test(tc, test_backoff_bad_inputs_are_clamped);
	tcase_add_test(tc, test_backoff_random_is_in_unit_interval);
	suite_add_tcase(s, tc);
	return s;
}
