/* mqtt2kafka: command line. Loads and checks the configuration, then hands
 * over to daemon_run (wiring, signals, ordered shutdown). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/confluent_import.h"
#include "daemon.h"
#include "util/log.h"
#include "auth/passwd_tool.h"
#include "runtime.h"
#include "version.h"

#define ERRBUF_SIZE 65536

/* --check's warnings: "file:line:col: warning: message" on stderr. */
static void print_warning(void *ud, config_pos_t pos, const char *msg) {
    fprintf(stderr, "%s:%d:%d: warning: %s\n", (const char *)ud, pos.line, pos.col, msg);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: mqtt2kafka [-c FILE] [-t|--check] [--import-confluent FILE] [-V|--version] "
            "[-h|--help]\n"
            "       mqtt2kafka passwd [-D] FILE USER\n"
            "\n"
            "An MQTT 3.1.1 to Kafka proxy: acknowledges a QoS 1/2 PUBLISH only after\n"
            "Kafka has confirmed the record.\n"
            "\n"
            "  -c FILE       configuration file (default " CONFIG_DEFAULT_PATH ")\n"
            "  -t, --check   validate the configuration (and load its TLS, password and\n"
            "                ACL files), print \"configuration OK\" or every error as\n"
            "                file:line:col: message, and exit 0 or 1\n"
            "  --import-confluent FILE\n"
            "                print the configuration equivalent to a Confluent MQTT Proxy\n"
            "                properties file (kafka-mqtt.properties) and exit\n"
            "  -V, --version print the version and exit\n"
            "  -h, --help    print this help and exit\n"
            "\n"
            "  passwd FILE USER     add USER to a Mosquitto-format password file or change\n"
            "                       its password (read from the terminal, or one line of stdin)\n"
            "  passwd -D FILE USER  delete USER\n");
}

int main(int argc, char **argv) {
    const char *path = CONFIG_DEFAULT_PATH;
    const char *import = NULL;
    int check = 0;
    if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
        return passwd_tool_main(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("mqtt2kafka %s\n", M2K_VERSION);
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--settings-markdown") == 0) {
            /* Not in the usage: regenerates docs/configuration.md's table. */
            config_settings_markdown(stdout);
            return 0;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--check") == 0) {
            check = 1;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--import-confluent") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mqtt2kafka: %s needs a file name\n", a);
                usage(stderr);
                return 2;
            }
            if (a[1] == 'c')
                path = argv[++i];
            else
                import = argv[++i];
        } else {
            fprintf(stderr, "mqtt2kafka: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    char *errbuf = malloc(ERRBUF_SIZE);
    if (!errbuf) {
        fprintf(stderr, "mqtt2kafka: out of memory\n");
        return 1;
    }
    int rc = 1;
    config_t *cfg = NULL;
    if (import) {
        if (confluent_import(import, stdout, errbuf, ERRBUF_SIZE) < 0)
            fputs(errbuf, stderr);
        else
            rc = 0;
        goto out;
    }
    if (config_load(path, &cfg, errbuf, ERRBUF_SIZE) < 0) {
        fputs(errbuf, stderr);
        goto out;
    }
    if (check) {
        /* What the start would build, built and thrown away (runtime.h). */
        runtime_prep_t *prep;
        if (runtime_prepare(NULL, cfg, RUNTIME_CHECK, &prep, errbuf, ERRBUF_SIZE) != 0) {
            fputs(errbuf, stderr);
            goto out;
        }
        runtime_abort(prep);
        for (size_t i = 0; i < cfg->n_rules; i++)
            topic_map_rule_lint(&cfg->rules[i], i, print_warning, cfg->path);
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    rc = daemon_run(cfg);
out:
    config_free(cfg);
    free(errbuf);
    return rc;
}
