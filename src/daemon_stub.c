/* Stand-in for src/daemon.c on the config branch (deleted at merge). */
#include "daemon.h"

#include "log.h"

int daemon_run(const config_t *cfg) {
    (void)cfg;
    log_error("daemon not built in this branch");
    return 0;
}
