#include "headers.h"

#include <stdlib.h>

ssize_t kafka_headers_view(const rd_kafka_message_t *m, kafka_header_t **arr, size_t *cap,
                           size_t *count) {
    rd_kafka_headers_t *hdrs = NULL;
    *count = 0;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        *count = rd_kafka_header_cnt(hdrs);
    if (*count > *cap) {
        kafka_header_t *h = realloc(*arr, *count * sizeof(*h));
        if (h == NULL)
            return -1;
        *arr = h;
        *cap = *count;
    }
    size_t n = 0;
    for (; n < *count; n++) {
        const char *name;
        const void *value;
        size_t len;
        if (rd_kafka_header_get_all(hdrs, n, &name, &value, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        (*arr)[n] = (kafka_header_t){name, value, len};
    }
    return (ssize_t)n;
}
