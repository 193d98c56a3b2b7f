/* cmd_dba.h -- the DBA's commands: status, replay, dead-letters, show, keys. */
#ifndef PGEVENTD_CMD_DBA_H
#define PGEVENTD_CMD_DBA_H

#include "conf.h"

/* argv[0] is the command name. Each returns an exit status (sysexits). */
int cmd_status_main(const struct config *cfg, int argc, char **argv);
int cmd_replay_main(const struct config *cfg, int argc, char **argv);
int cmd_dead_letters_main(const struct config *cfg, int argc, char **argv);
int cmd_show_main(const struct config *cfg, int argc, char **argv);
int cmd_keys_main(const struct config *cfg, int argc, char **argv);

/* Their usage text for `pgeventd help COMMAND` and COMMAND --help. */
extern const char cmd_status_usage[];
extern const char cmd_replay_usage[];
extern const char cmd_dead_letters_usage[];
extern const char cmd_show_usage[];
extern const char cmd_keys_usage[];

#endif
