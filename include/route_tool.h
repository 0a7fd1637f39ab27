/* mqtt2kafka route: which rule, Kafka topic, key and headers a PUBLISH on a
 * topic gets, or why it would not reach Kafka, computed by the daemon's own
 * topic map and ACL from a configuration file (no network). */
#ifndef M2K_ROUTE_TOOL_H
#define M2K_ROUTE_TOOL_H

/* argv[0] is "route". Returns the exit status: 0 the message reaches Kafka,
 * 3 it does not (refused, unmapped), 1 a configuration error, 2 usage. */
int route_tool_main(int argc, char **argv, const char *default_config);

#endif
