/* mqtt2kafka: command line, wiring of the modules, signals, ordered shutdown. */
#include <stdio.h>
#include <string.h>

#include "version.h"

static void usage(FILE *out) {
    fprintf(out, "usage: mqtt2kafka [-c FILE] [-t|--check] [-V|--version] [-h|--help]\n"
                 "\n"
                 "An MQTT 3.1.1 to Kafka proxy: acknowledges a QoS 1/2 PUBLISH only after\n"
                 "Kafka has confirmed the record.\n"
                 "\n"
                 "  -c FILE       configuration file (default /etc/mqtt2kafka/mqtt2kafka.yaml)\n"
                 "  -t, --check   validate the configuration and exit\n"
                 "  -V, --version print the version and exit\n"
                 "  -h, --help    print this help and exit\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("mqtt2kafka %s\n", M2K_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
    }
    printf("mqtt2kafka %s\n", M2K_VERSION);
    return 0;
}
