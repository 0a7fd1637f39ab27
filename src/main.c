/* mqtt2kafka: command line. Loads and checks the configuration, then hands
 * over to daemon_run (wiring, signals, ordered shutdown). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/confluent_import.h"
#include "daemon.h"
#include "util/log.h"
#include "util/malloc_tune.h"
#include "auth/passwd_tool.h"
#include "route_tool.h"
#include "runtime.h"
#include "version.h"

#define ERRBUF_SIZE 65536

/* --check's warnings: "file:line:col: warning: message" on stderr. */
static void usage(FILE *out) {
    fprintf(out,
            "usage: mqtt2kafka [-c FILE] [-t|--check] [--import-confluent FILE] [-V|--version] "
            "[-h|--help]\n"
            "       mqtt2kafka passwd [-D] FILE USER\n"
            "       mqtt2kafka route [-c FILE] TOPIC [--client-id ID] [--username USER]\n"
            "\n"
            "An MQTT 3.1.1 to Kafka proxy: acknowledges a QoS 1/2 PUBLISH only after\n"
            "Kafka has confirmed the record.\n"
            "\n"
            "  -c, --config FILE (also -c=FILE, --config=FILE)\n"
            "                configuration file, default " CONFIG_DEFAULT_PATH "\n"
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
            "  passwd -D FILE USER  delete USER\n"
            "  route [-c FILE] TOPIC [--client-id ID] [--username USER]\n"
            "                       a dry run: the rule, Kafka topic, key and headers a PUBLISH\n"
            "                       on TOPIC gets, or why it would not reach Kafka (exit 3)\n");
}

/* An option with a value, written "-c FILE", "-c=FILE", "--config FILE" or
 * "--config=FILE": returns 1 when argv[*i] is the option (the value, or NULL
 * when it is missing or empty, in *value; *i past what was used), else 0. */
static int option_value(int argc, char **argv, int *i, const char *shrt, const char *lng,
                        const char **value) {
    const char *a = argv[*i];
    const char *names[2] = {shrt, lng};
    for (int n = 0; n < 2; n++) {
        if (names[n] == NULL)
            continue;
        size_t len = strlen(names[n]);
        if (strncmp(a, names[n], len) != 0)
            continue;
        if (a[len] == '=') {
            *value = a[len + 1] != '\0' ? a + len + 1 : NULL;
            return 1;
        }
        if (a[len] == '\0') {
            *value = *i + 1 < argc ? argv[++*i] : NULL;
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    m2k_malloc_tune();
    const char *path = CONFIG_DEFAULT_PATH;
    const char *import = NULL;
    int check = 0;
    if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
        return passwd_tool_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "route") == 0)
        return route_tool_main(argc - 1, argv + 1, CONFIG_DEFAULT_PATH);
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
        } else if (option_value(argc, argv, &i, "-c", "--config", &path) ||
                   option_value(argc, argv, &i, NULL, "--import-confluent", &import)) {
            if (path == NULL || (import == NULL && strncmp(a, "--import", 8) == 0)) {
                fprintf(stderr, "mqtt2kafka: %.*s needs a file name\n", (int)strcspn(a, "="), a);
                usage(stderr);
                return 2;
            }
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
    config_t *partial = NULL;
    if (config_load_partial(path, &cfg, &partial, errbuf, ERRBUF_SIZE) < 0) {
        /* Every error of the run: the files and Kafka properties of what did
         * parse are checked too, then all of it sorted by line. */
        if (partial) {
            size_t len = strlen(errbuf);
            runtime_prep_t *prep;
            if (runtime_prepare(NULL, partial, RUNTIME_CHECK, &prep, errbuf + len,
                                ERRBUF_SIZE - len) == 0)
                runtime_abort(prep);
            config_lint(partial, errbuf, ERRBUF_SIZE);
            config_free(partial);
        }
        runtime_sort_errors(errbuf, path);
        fputs(errbuf, stderr);
        goto out;
    }
    if (check) {
        /* What the start would build, built and thrown away (runtime.h). */
        runtime_prep_t *prep;
        int failed = runtime_prepare(NULL, cfg, RUNTIME_CHECK, &prep, errbuf, ERRBUF_SIZE);
        /* Warnings with the errors, sorted by line; alone they pass. */
        config_lint(cfg, errbuf, ERRBUF_SIZE);
        runtime_sort_errors(errbuf, path);
        fputs(errbuf, stderr);
        if (failed)
            goto out;
        runtime_abort(prep);
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
