/*
 * core.c -- the handlers every pgeventd has: log, noop and probe.
 *
 * They touch no table, so an operator can smoke-test a deployment end to
 * end (INSERT, claim, outcome, retry, dead letter) on any database.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "handlers/core.h"

#include <stdio.h>
#include <string.h>

/* Logs the event's identity and payload size; never the payload itself,
 * which may hold personal data. */
enum handler_result core_log(struct handler_ctx *ctx, const struct event *ev)
{
	char size[32];

	snprintf(size, sizeof(size), "%zu", strlen(ev->payload_text));
	handler_log(ctx, "event logged", "payload_bytes", size);
	return HANDLER_OK;
}

enum handler_result core_noop(struct handler_ctx *ctx, const struct event *ev)
{
	(void)ctx;
	(void)ev;
	return HANDLER_OK;
}

/*
 * pgeventd.probe: succeeds unless told otherwise. Payload: a JSON object,
 * optionally {"fail": "retry" | "permanent", "message": "..."}. A retry
 * probe keeps failing until it is dead-lettered after max_attempts, which
 * is what an operator wants to see once: the whole failure path.
 */
enum handler_result core_probe(struct handler_ctx *ctx, const struct event *ev)
{
	const json_t *fail, *msg;
	const char *text = "probe asked to fail";

	if (!json_is_object(ev->payload))
		return handler_error(ctx, "payload must be a JSON object, got %s",
		                     handler_json_type(ev->payload));
	msg = json_object_get(ev->payload, "message");
	if (msg && !json_is_string(msg))
		return handler_error(ctx, "message must be a string, got %s",
		                     handler_json_type(msg));
	if (msg)
		text = json_string_value(msg);
	fail = json_object_get(ev->payload, "fail");
	if (!fail || json_is_null(fail) || json_is_false(fail))
		return HANDLER_OK;
	if (json_is_string(fail) && strcmp(json_string_value(fail), "retry") == 0)
		return handler_retry(ctx, "%s", text);
	if (json_is_string(fail) && strcmp(json_string_value(fail), "permanent") == 0)
		return handler_error(ctx, "%s", text);
	return handler_error(ctx, "fail must be \"retry\" or \"permanent\", got %s",
	                     json_is_string(fail) ? json_string_value(fail)
	                                          : handler_json_type(fail));
}
