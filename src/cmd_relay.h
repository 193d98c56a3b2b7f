/* cmd_relay.h -- `pgeventd subscriptions ...` and `pgeventd deliveries ...`. */
#ifndef PGEVENTD_CMD_RELAY_H
#define PGEVENTD_CMD_RELAY_H

#include "conf.h"

/* argv[0] is the command name, argv[1] the verb. Return an exit status. */
int cmd_subscriptions_main(const struct config *cfg, int argc, char **argv);
int cmd_deliveries_main(const struct config *cfg, int argc, char **argv);

#endif
