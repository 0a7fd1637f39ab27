/* The headers of a librdkafka message as kafka_header_t views, shared by the
 * producer's delivery reports and the consumer. Private to src/kafka/. */
#ifndef M2K_KAFKA_HEADERS_H
#define M2K_KAFKA_HEADERS_H

#include <stddef.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "kafka/producer.h"

/* Fills (*arr)[0..n) with views into m's headers (valid while m lives),
 * growing *arr (capacity *cap, owned by the caller) when it is too small;
 * *count is how many headers m has. Returns n, or -1 when *arr cannot grow.
 * A header librdkafka cannot hand back ends the list there (n < *count). */
ssize_t kafka_headers_view(const rd_kafka_message_t *m, kafka_header_t **arr, size_t *cap,
                           size_t *count);

#endif
