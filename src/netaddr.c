/* netaddr.c -- the addresses relay.block_private_networks refuses (netaddr.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

bool netaddr_ipv4_blocked(uint32_t a)
{
	return (a >> 24) == 0 ||                        /* 0.0.0.0/8 */
	       (a >> 24) == 10 ||                       /* 10/8 */
	       (a >> 24) == 127 ||                      /* loopback */
	       (a >> 22) == (100 << 2 | 1) ||           /* 100.64/10 carrier-grade NAT */
	       (a >> 16) == (169 << 8 | 254) ||         /* link-local, cloud metadata */
	       (a >> 20) == (172 << 4 | 1) ||           /* 172.16/12 */
	       (a >> 8) == (192u << 16 | 0 << 8 | 0) || /* 192.0.0/24 IETF protocol */
	       (a >> 16) == (192 << 8 | 168) ||         /* 192.168/16 */
	       (a >> 17) == (198u << 7 | 18 >> 1) ||    /* 198.18/15 benchmarking */
	       (a >> 28) >= 14;                         /* multicast, reserved, broadcast */
}

/* The 32 bits at b[i..i+3], most significant first. */
static uint32_t ipv4_at(const uint8_t *b, int i)
{
	return (uint32_t)b[i] << 24 | (uint32_t)b[i + 1] << 16 | (uint32_t)b[i + 2] << 8 | b[i + 3];
}

/* Whether the first `n` bytes of `b` are those of `prefix`. */
static bool has_prefix(const uint8_t *b, const uint8_t *prefix, size_t n)
{
	return memcmp(b, prefix, n) == 0;
}

static bool ipv6_blocked(const struct in6_addr *a)
{
	static const uint8_t zero96[12] = { 0 };
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b }; /* 64:ff9b::/96 */
	static const uint8_t nat64_local[6] = { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 };
	static const uint8_t discard[8] = { 0x01, 0x00 };            /* 100::/64 */
	static const uint8_t teredo[4] = { 0x20, 0x01, 0x00, 0x00 }; /* 2001::/32 */
	const uint8_t *b = a->s6_addr;

	/* ::/96 holds :: and ::1 too: they fall in 0.0.0.0/8. */
	if (has_prefix(b, zero96, 12) || has_prefix(b, mapped, 12) || has_prefix(b, nat64, 12))
		return netaddr_ipv4_blocked(ipv4_at(b, 12));
	if (b[0] == 0x20 && b[1] == 0x02) /* 6to4: 2002:AABB:CCDD::/48 */
		return netaddr_ipv4_blocked(ipv4_at(b, 2));
	if (has_prefix(b, teredo, 4)) /* the client's address, bits inverted */
		return netaddr_ipv4_blocked(~ipv4_at(b, 12));
	return has_prefix(b, nat64_local, 6) || has_prefix(b, discard, 8) ||
	       IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) ||
	       (b[0] & 0xfe) == 0xfc; /* fc00::/7 unique local */
}

bool netaddr_blocked(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return netaddr_ipv4_blocked(
		    ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
		return ipv6_blocked(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
	return true; /* not an internet address at all */
}
