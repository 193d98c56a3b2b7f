/*
 * netaddr.h -- which addresses relay.block_private_networks refuses: the
 * check the HTTP transport runs on the address curl is about to connect to,
 * and the broker transports on their hosts (broker_hosts_blocked) and on
 * what librdkafka connects to.
 */
#ifndef PGEVENTD_NETADDR_H
#define PGEVENTD_NETADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Whether the IPv4 address `a` (host byte order) is one a webhook must not
 * reach with block_private_networks on: this network (0/8), private (10/8,
 * 172.16/12, 192.168/16), loopback, carrier-grade NAT (100.64/10),
 * link-local with the cloud metadata service (169.254/16), IETF protocol
 * assignments (192.0.0/24), benchmarking (198.18/15), multicast, reserved
 * and broadcast.
 */
bool netaddr_ipv4_blocked(uint32_t a);

/*
 * Whether `sa` is refused. IPv6: loopback, unspecified, link-local,
 * site-local, unique local (fc00::/7), multicast, the discard prefix
 * 100::/64, the local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215, never
 * global: which IPv4 address it stands for depends on the site's own
 * translator), and every form that carries an IPv4 address the rule above
 * refuses: IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64
 * 64:ff9b::/96 (RFC 6052), 6to4 2002::/16 (RFC 3056) and Teredo 2001::/32
 * (the client address, RFC 4380). Any other family is refused. Pure: no
 * lookup, no allocation.
 */
bool netaddr_blocked(const struct sockaddr *sa);

#endif
