/* test_packs.c -- the packs linked into test binaries: the daemon's plus "test". */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "handlers/buddy/buddy.h"
#include "handlers/registry.h"
#include "tests/test_handlers.h"

const struct handler_pack *const handler_packs[] = {
	&core_pack,
	&buddy_pack,
	&test_pack,
	NULL,
};
