/* listener.h -- open a nonblocking TCP listening socket from a "host:port" spec. */
#ifndef PGEVENTD_LISTENER_H
#define PGEVENTD_LISTENER_H

#include <stddef.h>

/*
 * Listen on `spec`: "host:port", "[ipv6]:port", ":port" or "*:port" (all
 * addresses: one dual-stack socket, or IPv4 alone where the kernel has no
 * IPv6); port 0 = ephemeral. Returns the nonblocking, close-on-exec socket
 * and stores the bound port in `bound_port`; -1 with a message in err
 * ("cannot listen on 127.0.0.1:8080: Address already in use").
 */
int listener_open(const char *spec, int *bound_port, char *err, size_t errlen);

#endif
