/* test_handlers.h -- the test-only handler pack (never in the installed daemon). */
#ifndef PGEVENTD_TEST_HANDLERS_H
#define PGEVENTD_TEST_HANDLERS_H

#include "handlers/handler.h"

extern const struct handler_pack test_pack;

#endif
