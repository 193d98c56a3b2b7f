/* cmd_dba.c -- placeholder; being written. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd_dba.h"

#include <stdio.h>

const char cmd_status_usage[] = "status [--json]";
const char cmd_replay_usage[] = "replay ...";
const char cmd_dead_letters_usage[] = "dead-letters list [--type T] [--limit N] [--json]";
const char cmd_show_usage[] = "show ID [--json]";

static int todo(void)
{
	fprintf(stderr, "pgeventd: not built yet\n");
	return 70;
}

int cmd_status_main(const struct config *cfg, int argc, char **argv)
{
	(void)cfg, (void)argc, (void)argv;
	return todo();
}

int cmd_replay_main(const struct config *cfg, int argc, char **argv)
{
	(void)cfg, (void)argc, (void)argv;
	return todo();
}

int cmd_dead_letters_main(const struct config *cfg, int argc, char **argv)
{
	(void)cfg, (void)argc, (void)argv;
	return todo();
}

int cmd_show_main(const struct config *cfg, int argc, char **argv)
{
	(void)cfg, (void)argc, (void)argv;
	return todo();
}
