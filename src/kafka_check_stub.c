/* kafka_check_property for the config branch; merged into src/kafka.c (the
 * only module that uses librdkafka) by the lead. */
#include "kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>

int kafka_check_property(const char *name, const char *value, char *errbuf, size_t errlen) {
    /* A fresh conf each time: librdkafka validates names and values on set,
     * and nothing else must leak into the check. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, errbuf, errlen);
    rd_kafka_conf_destroy(conf);
    return res == RD_KAFKA_CONF_OK ? 0 : -1;
}
