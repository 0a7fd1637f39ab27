/* Accept admission (see conn.h): max_connections, the TLS handshake caps
 * and the per-address limits refuse a connection at once (accepted and
 * closed, so the client sees a refusal, not a hang); an admitted one gets
 * its transport stack and protocol object and starts reading. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/security.h"

/* ---- accept ---------------------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h) {
    free(h);
}

static void format_peer(uv_tcp_t *tcp, char *out, size_t cap) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[64] = "?";
    int port = 0;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
            snprintf(out, cap, "[%s]:%d", host, port);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s:%d", host, port);
}

/* max_connections and max_tls_handshakes: accepted and closed at once, so
 * the client sees a refusal, not a hang. */
static void refuse_over_max(server_t *s, listener_t *l, uv_stream_t *ls, bool handshakes) {
    uv_tcp_t *t = malloc(sizeof(*t));
    if (!t)
        return;
    uv_tcp_init(&s->loop, t);
    if (uv_accept(ls, (uv_stream_t *)t) == 0) {
        char peer[96];
        format_peer(t, peer, sizeof(peer));
        if (handshakes) {
            l->svc->st.tls_handshake_failures++;
            log_client_ratelimited(&s->rl_refused, LOG_WARN, NULL, peer,
                                   "refused: mqtt.max_tls_handshakes %u in progress",
                                   s->cfg->mqtt.max_tls_handshakes);
        } else {
            l->svc->st.refused_max_connections++;
            log_client_ratelimited(&s->rl_refused, LOG_WARN, NULL, peer,
                                   "refused: max_connections %u reached",
                                   s->cfg->mqtt.max_connections);
        }
    }
    uv_close((uv_handle_t *)t, on_refused_closed);
}

void conn_on_connection(uv_stream_t *ls, int status) {
    listener_t *l = ls->data;
    server_t *s = l->srv;
    service_t *svc = l->svc;
    if (status < 0) {
        log_warn("accept on %s: %s", l->name, uv_strerror(status));
        return;
    }
    net_set_now(s);
    if (svc->limits && svc->n_conns >= s->cfg->mqtt.max_connections) {
        refuse_over_max(s, l, ls, false);
        return;
    }
    bool tls = false; /* its handshake's private-key work waits for a worker */
    for (size_t i = 0; i < l->stack.n; i++)
        tls |= strcmp(l->stack.type[i]->name, "TLS") == 0;
    if (svc->limits && tls && s->handshakes >= s->cfg->mqtt.max_tls_handshakes) {
        refuse_over_max(s, l, ls, true);
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        return;
    }
    c->l = l;
    list_init(&c->node);
    list_init(&c->pending);
    uv_tcp_init(&s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char peer[96], ip[IPLIMIT_KEY_MAX] = "";
    format_peer(&c->tcp, peer, sizeof(peer));
    if (svc->limits) {
        security_addr_ip(peer, ip, sizeof(ip));
        int lim = iplimit_accept(s->iplimit, ip, uv_now(&s->loop));
        if (lim != IPLIMIT_OK) {
            if (lim == IPLIMIT_RATE)
                svc->st.refused_rate_per_ip++;
            else
                svc->st.refused_per_ip++;
            log_ratelimited(&s->iplimit_log, LOG_WARN, "refusing %s on %s: %s", peer, l->name,
                            iplimit_strerror(lim));
            uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
            return;
        }
    }
    uint32_t tls_per_ip = s->cfg->mqtt.max_tls_handshakes_per_ip;
    if (svc->limits && tls && tls_per_ip) {
        /* One address cannot take every handshake slot (and worker turn). */
        int lim = iplimit_handshake_begin(s->iplimit, ip, tls_per_ip, uv_now(&s->loop));
        if (lim != IPLIMIT_OK) {
            svc->st.tls_handshake_failures++;
            if (lim == IPLIMIT_HANDSHAKES)
                log_ratelimited(&s->iplimit_log, LOG_WARN,
                                "refusing %s on %s: mqtt.max_tls_handshakes_per_ip %u in progress",
                                peer, l->name, tls_per_ip);
            else
                log_ratelimited(&s->iplimit_log, LOG_WARN, "refusing %s on %s: %s", peer, l->name,
                                iplimit_strerror(lim));
            iplimit_release(s->iplimit, ip, uv_now(&s->loop));
            uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
            return;
        }
        c->tls_counted_ip = true;
    }
    c->since_ms = uv_now(&s->loop);
    if (!(c->tr = transport_conn_new(&l->stack, peer)) ||
        !(c->pc = svc->p.ops->conn_open(svc->p.ud, c, peer))) {
        transport_conn_free(c->tr);
        if (svc->limits)
            iplimit_release(s->iplimit, ip, uv_now(&s->loop));
        if (c->tls_counted_ip)
            iplimit_handshake_end(s->iplimit, ip, uv_now(&s->loop));
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    c->counted_ip = svc->limits; /* released with the protocol's address, see conn_t */
    list_insert_head(&s->conns, &c->node);
    svc->n_conns++;
    svc->st.accepted++;
    if (svc->limits) /* the metrics listener's accepts are not logged */
        log_debug("accepted %s on %s", peer, l->name);
    if (svc->limits && tls) { /* it starts in CONN_HANDSHAKE */
        c->tls_counted = true;
        s->handshakes++;
    }
    if (!c->tr->type->handshake)
        conn_set_state(c, CONN_OPEN);
    conn_read_start(c);
}
