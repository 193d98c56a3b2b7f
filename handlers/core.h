/* core.h -- the handlers of the core pack (handlers/core.c). */
#ifndef PGEVENTD_HANDLERS_CORE_H
#define PGEVENTD_HANDLERS_CORE_H

#include "handlers/handler.h"

enum handler_result core_log(struct handler_ctx *ctx, const struct event *ev);
enum handler_result core_noop(struct handler_ctx *ctx, const struct event *ev);
enum handler_result core_probe(struct handler_ctx *ctx, const struct event *ev);

#endif
