/* check_netaddr.c -- the addresses relay.block_private_networks refuses, and those it lets through.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "src/netaddr.h"
#include "tests/check_unit.h"

/* Whether netaddr_blocked refuses the address written as `text` (IPv4 or IPv6). */
static bool blocked(const char *text)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;

	memset(&a6, 0, sizeof(a6));
	memset(&a4, 0, sizeof(a4));
	if (inet_pton(AF_INET, text, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		return netaddr_blocked((const struct sockaddr *)&a4);
	}
	ck_assert_msg(inet_pton(AF_INET6, text, &a6.sin6_addr) == 1, "not an address: %s", text);
	a6.sin6_family = AF_INET6;
	return netaddr_blocked((const struct sockaddr *)&a6);
}

static void check_all(const char *const *addrs, bool want)
{
	for (const char *const *a = addrs; *a; a++)
		ck_assert_msg(blocked(*a) == want, "%s: expected %s", *a,
		              want ? "refused" : "allowed");
}

START_TEST(test_private_and_loopback_ipv4_are_refused)
{
	static const char *const refused[] = {
		"127.0.0.1",      "127.255.255.254", "10.0.0.1",        "172.16.0.1",
		"172.31.255.255", "192.168.1.1",     "169.254.169.254", "100.64.0.1",
		"0.0.0.0",        "224.0.0.1",       "240.0.0.1",       "255.255.255.255",
		"192.0.0.170",    "198.18.0.1",      "198.19.255.255",  NULL,
	};
	check_all(refused, true);
}
END_TEST

START_TEST(test_public_ipv4_is_allowed)
{
	static const char *const allowed[] = {
		"8.8.8.8",     "1.1.1.1",   "172.15.255.255", "172.32.0.1", "100.63.255.255",
		"100.128.0.1", "192.0.1.1", "198.17.255.255", "198.20.0.1", "93.184.216.34",
		NULL,
	};
	check_all(allowed, false);
}
END_TEST

START_TEST(test_ipv6_local_ranges_are_refused)
{
	static const char *const refused[] = {
		"::1",          "::",      "fe80::1", "fec0::1", "fc00::1",
		"fd12:3456::1", "ff02::1", "100::1",  NULL,
	};
	check_all(refused, true);
}
END_TEST

START_TEST(test_ipv4_mapped_and_compatible_carry_the_ipv4_verdict)
{
	static const char *const refused[] = {
		"::ffff:127.0.0.1",
		"::ffff:10.1.2.3",
		"::ffff:169.254.169.254",
		"::127.0.0.1",
		"::10.0.0.1",
		"::192.168.0.1",
		NULL,
	};
	static const char *const allowed[] = { "::ffff:8.8.8.8", "::8.8.8.8", NULL };

	check_all(refused, true);
	check_all(allowed, false);
}
END_TEST

START_TEST(test_nat64_well_known_prefix_carries_the_ipv4_verdict)
{
	static const char *const refused[] = {
		"64:ff9b::127.0.0.1",
		"64:ff9b::7f00:1",
		"64:ff9b::10.0.0.1",
		"64:ff9b::a9fe:a9fe",
		"64:ff9b::192.168.0.1",
		"64:ff9b::0.0.0.0",
		NULL,
	};
	static const char *const allowed[] = { "64:ff9b::8.8.8.8", "64:ff9b::5db8:d822", NULL };

	check_all(refused, true);
	check_all(allowed, false);
}
END_TEST

START_TEST(test_nat64_local_use_prefix_is_refused_whole)
{
	/* Where the IPv4 address sits depends on the site's prefix length:
	 * /48 (bits 48-63 and 72-87) or /96 (the last 32): all of it is refused. */
	static const char *const refused[] = {
		"64:ff9b:1::127.0.0.1",
		"64:ff9b:1:7f00:0:100::",
		"64:ff9b:1::8.8.8.8",
		"64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
		NULL,
	};
	static const char *const allowed[] = { "64:ff9b:2::8.8.8.8", "64:ff9b:0:1::1", NULL };

	check_all(refused, true);
	check_all(allowed, false);
}
END_TEST

START_TEST(test_6to4_carries_the_ipv4_verdict)
{
	static const char *const refused[] = {
		"2002:7f00:1::",
		"2002:7f00:0001:1234::1",
		"2002:a00:1::1",
		"2002:c0a8:101::",
		"2002:a9fe:a9fe::",
		"2002::",
		NULL,
	};
	static const char *const allowed[] = { "2002:808:808::1", "2002:5db8:d822::", NULL };

	check_all(refused, true);
	check_all(allowed, false);
}
END_TEST

START_TEST(test_teredo_client_carries_the_ipv4_verdict)
{
	/* The client's address is stored with every bit inverted:
	 * 127.0.0.1 -> 80ff:fffe, 10.0.0.1 -> f5ff:fffe, 8.8.8.8 -> f7f7:f7f7. */
	static const char *const refused[] = { "2001:0:4136:e378:8000:63bf:80ff:fffe",
		                               "2001:0:4136:e378:8000:63bf:f5ff:fffe", NULL };
	static const char *const allowed[] = { "2001:0:4136:e378:8000:63bf:f7f7:f7f7", NULL };

	check_all(refused, true);
	check_all(allowed, false);
}
END_TEST

START_TEST(test_global_ipv6_is_allowed)
{
	static const char *const allowed[] = {
		"2001:4860:4860::8888",
		"2606:4700:4700::1111",
		"2a00:1450:4001:80b::200e",
		"2003::1",
		"2001:db9::1",
		NULL,
	};
	check_all(allowed, false);
}
END_TEST

START_TEST(test_other_families_are_refused)
{
	struct sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	ck_assert(netaddr_blocked(&sa));
}
END_TEST

Suite *netaddr_suite(void)
{
	Suite *s = suite_create("netaddr");
	TCase *v4 = tcase_create("ipv4"), *v6 = tcase_create("ipv6"),
	      *embedded = tcase_create("ipv4 inside ipv6");

	tcase_add_test(v4, test_private_and_loopback_ipv4_are_refused);
	tcase_add_test(v4, test_public_ipv4_is_allowed);
	tcase_add_test(v6, test_ipv6_local_ranges_are_refused);
	tcase_add_test(v6, test_global_ipv6_is_allowed);
	tcase_add_test(v6, test_other_families_are_refused);
	tcase_add_test(embedded, test_ipv4_mapped_and_compatible_carry_the_ipv4_verdict);
	tcase_add_test(embedded, test_nat64_well_known_prefix_carries_the_ipv4_verdict);
	tcase_add_test(embedded, test_nat64_local_use_prefix_is_refused_whole);
	tcase_add_test(embedded, test_6to4_carries_the_ipv4_verdict);
	tcase_add_test(embedded, test_teredo_client_carries_the_ipv4_verdict);
	suite_add_tcase(s, v4);
	suite_add_tcase(s, v6);
	suite_add_tcase(s, embedded);
	return s;
}
