/*
 * packs.c -- the handler packs linked into the installed daemon.
 * A new pack adds one line here (test binaries use tests/test_packs.c).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "handlers/buddy/buddy.h"
#include "handlers/registry.h"

const struct handler_pack *const handler_packs[] = {
	&core_pack,
	&buddy_pack,
	NULL,
};
