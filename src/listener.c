/* listener.c -- the health server's listening socket, from a "host:port" spec (listener.h). */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 128

/* Split "host:port", "[v6]:port", ":port" or "*:port"; host is "" for all addresses. */
static bool split_listen(const char *spec, char *host, size_t hostlen, unsigned *port)
{
	const char *h0, *h1, *p;
	unsigned long v = 0;

	if (spec[0] == '[') {
		h0 = spec + 1;
		h1 = strchr(h0, ']');
		if (!h1 || h1 == h0 || h1[1] != ':')
			return false;
		p = h1 + 2;
	} else {
		h0 = spec;
		h1 = strrchr(spec, ':');
		if (!h1 || memchr(h0, ':', (size_t)(h1 - h0)))
			return false; /* no port, or an IPv6 address without brackets */
		p = h1 + 1;
	}
	if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p))
		return false;
	v = strtoul(p, NULL, 10);
	if (v > 65535 || (size_t)(h1 - h0) >= hostlen)
		return false;
	memcpy(host, h0, (size_t)(h1 - h0));
	host[h1 - h0] = '\0';
	if (spec[0] != '[' && strcmp(host, "*") == 0)
		host[0] = '\0';
	*port = (unsigned)v;
	return true;
}

/* A nonblocking, close-on-exec listening socket on sa, or -1 with errno set. */
static int bind_listen(const struct sockaddr *sa, socklen_t salen, bool dual_stack)
{
	int fd, one = 1, zero = 0, saved;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (dual_stack && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto fail;
	if (bind(fd, sa, salen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* All addresses: IPv6 and IPv4 on one dual-stack socket, or IPv4 alone
 * where the kernel has no IPv6. */
static int listen_any(unsigned port)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	int fd;

	memset(&a6, 0, sizeof(a6));
	a6.sin6_family = AF_INET6;
	a6.sin6_port = htons((uint16_t)port);
	a6.sin6_addr = in6addr_any;
	fd = bind_listen((struct sockaddr *)&a6, sizeof(a6), true);
	if (fd >= 0 || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL))
		return fd;
	memset(&a4, 0, sizeof(a4));
	a4.sin_family = AF_INET;
	a4.sin_port = htons((uint16_t)port);
	a4.sin_addr.s_addr = htonl(INADDR_ANY);
	return bind_listen((struct sockaddr *)&a4, sizeof(a4), false);
}

int listener_open(const char *spec, int *bound_port, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256], portstr[8];
	unsigned port;
	int fd = -1, rc, first_errno = 0;

	if (!split_listen(spec, host, sizeof(host), &port)) {
		snprintf(err, errlen,
		         "cannot listen on %s: expected host:port, [ipv6]:port, :port or *:port",
		         spec);
		return -1;
	}
	if (host[0] == '\0') {
		fd = listen_any(port);
		first_errno = errno;
	} else {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		snprintf(portstr, sizeof(portstr), "%u", port);
		rc = getaddrinfo(host, portstr, &hints, &res);
		if (rc != 0) {
			snprintf(err, errlen, "cannot listen on %s: %s", spec,
			         rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
			return -1;
		}
		/* the first address that works; report the most telling failure */
		for (ai = res; ai && fd < 0; ai = ai->ai_next) {
			fd = bind_listen(ai->ai_addr, ai->ai_addrlen, false);
			if (fd < 0 && (first_errno == 0 || first_errno == EAFNOSUPPORT ||
			               first_errno == EADDRNOTAVAIL))
				first_errno = errno;
		}
		freeaddrinfo(res);
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(first_errno));
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	*bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                             : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}
