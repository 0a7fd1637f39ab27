/* libFuzzer target for the configuration parser (config_load_string).
 *
 * Any input must either load (and then hold the invariants below) or fail
 * with every line of the error text naming the file: "f:LINE:COL: ..." or
 * "f: ...". Nothing else (listeners, TLS, Kafka) is touched. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char err[16384];
    config_t *cfg = NULL;
    int rc = config_load_string((const char *)data, size, "f", &cfg, err, sizeof(err));
    if (rc != 0) {
        CHECK(cfg == NULL);
        CHECK(strncmp(err, "f:", 2) == 0);
        /* Every complete line names the file (the last one may be cut where
         * the buffer ends). */
        for (const char *p = strchr(err, '\n'); p && p[1]; p = strchr(p + 1, '\n'))
            CHECK(!strchr(p + 1, '\n') || strncmp(p + 1, "f:", 2) == 0);
        return 0;
    }
    CHECK(cfg != NULL);
    CHECK(cfg->n_listeners >= 1);
    CHECK(cfg->bootstrap_servers && cfg->bootstrap_servers[0]);
    CHECK(cfg->mqtt.max_packet_size >= 128);
    CHECK(cfg->mqtt.max_inflight >= 1);
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const config_tls_t *t = &cfg->listeners[i].tls;
        CHECK(cfg->listeners[i].port > 0);
        if (t->enabled) {
            CHECK(t->cert && t->key);
            CHECK(!t->require_client_cert || t->ca);
            CHECK(!t->use_identity_as_username || t->require_client_cert);
            CHECK(t->min_version == CONFIG_TLS_1_2 || t->min_version == CONFIG_TLS_1_3);
        }
    }
    for (size_t i = 0; i < cfg->n_rules; i++)
        CHECK(cfg->rules[i].pattern && cfg->rules[i].kafka && cfg->rules[i].key);
    CHECK(cfg->auth.allow_anonymous_set || cfg->auth.allow_anonymous == !cfg->auth.password_file);
    config_free(cfg);
    return 0;
}
