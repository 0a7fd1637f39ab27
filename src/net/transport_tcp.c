/* Plain TCP: the identity layer (see transport.h). It has no state, so one
 * shared instance serves every plain connection and costs no memory. A layer
 * over plain TCP (ws) sits directly on the socket instead. */
#include "transport.h"

static void tcp_input(transport_t *t, conn_t *c, const uint8_t *p, size_t n) {
    transport_up(t, c, p, n);
}

static int tcp_output(transport_t *t, conn_t *c, const void *p, size_t n) {
    return transport_down(t, c, p, n);
}

static const transport_type_t tcp_type = {
    .name = "TCP",
    .input = tcp_input,
    .output = tcp_output,
};

transport_t transport_tcp = {&tcp_type, NULL, NULL};
