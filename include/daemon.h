/* The daemon: wires config, Kafka, topic map, sessions and server into one
 * event loop; handles signals and the ordered shutdown. */
#ifndef M2K_DAEMON_H
#define M2K_DAEMON_H

#include "config/config.h"

/* Runs until SIGTERM/SIGINT or a fatal error. Returns the process exit code:
 * 0 after a clean shutdown, non-zero after a fatal error. */
int daemon_run(const config_t *cfg);

#endif
