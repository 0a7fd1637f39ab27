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

void conn_on_refused_closed(uv_handle_t *h) {
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
            log_client_ratelimited(&s->sh->rl_refused, LOG_WARN, NULL, peer,
                                   "refused: mqtt.max_tls_handshakes %u in progress",
                                   s->cfg->mqtt.max_tls_handshakes);
        } else {
            l->svc->st.refused_max_connections++;
            log_client_ratelimited(&s->sh->rl_refused, LOG_WARN, NULL, peer,
                                   "refused: max_connections %u reached",
                                   s->cfg->mqtt.max_connections);
        }
    }
    uv_close((uv_handle_t *)t, conn_on_refused_closed);
}

/* The per-address limits are shared by every worker's server. */
int net_ip_accept(server_t *s, const char *ip) {
    pthread_mutex_lock(&s->sh->mu);
    int rc = iplimit_accept(s->sh->iplimit, ip, uv_now(&s->loop));
    pthread_mutex_unlock(&s->sh->mu);
    return rc;
}

int net_ip_handshake_begin(server_t *s, const char *ip, uint32_t max) {
    pthread_mutex_lock(&s->sh->mu);
    int rc = iplimit_handshake_begin(s->sh->iplimit, ip, max, uv_now(&s->loop));
    pthread_mutex_unlock(&s->sh->mu);
    return rc;
}

void net_ip_handshake_end(server_t *s, const char *ip) {
    pthread_mutex_lock(&s->sh->mu);
    iplimit_handshake_end(s->sh->iplimit, ip, uv_now(&s->loop));
    pthread_mutex_unlock(&s->sh->mu);
}

void net_ip_release(server_t *s, const char *ip) {
    pthread_mutex_lock(&s->sh->mu);
    iplimit_release(s->sh->iplimit, ip, uv_now(&s->loop));
    pthread_mutex_unlock(&s->sh->mu);
}

server_shared_t *server_shared_new(const config_t *cfg) {
    server_shared_t *sh = calloc(1, sizeof(*sh));
    const config_mqtt_t *mq = &cfg->mqtt;
    if (!sh)
        return NULL;
    sh->rl_refused = (log_ratelimit_t)LOG_RATELIMIT_INIT("connections refused at max_connections",
                                                         LOG_RATELIMIT_DEFAULT_BURST,
                                                         LOG_RATELIMIT_DEFAULT_INTERVAL_MS);
    sh->iplimit_log = (log_ratelimit_t)LOG_RATELIMIT_INIT("per-address limit", 10, 10000);
    sh->iplimit = iplimit_new(mq->max_connections_per_ip, mq->connect_rate_per_ip,
                              mq->connect_burst_per_ip, (size_t)mq->max_connections + 4096);
    if (!sh->iplimit || pthread_mutex_init(&sh->mu, NULL) != 0) {
        iplimit_free(sh->iplimit);
        free(sh);
        return NULL;
    }
    return sh;
}

void server_shared_free(server_shared_t *sh) {
    if (!sh)
        return;
    pthread_mutex_destroy(&sh->mu);
    iplimit_free(sh->iplimit);
    free(sh);
}

/* Takes one of `max` slots of a shared counter: true, or false when all
 * are taken (the counter is unchanged). Exact across workers. */
static bool take_slot(atomic_size_t *n, size_t max) {
    if (atomic_fetch_add(n, 1) < max)
        return true;
    atomic_fetch_sub(n, 1);
    return false;
}

/* The rest of the admission, with the shared connection slot (and with
 * TLS the handshake slot) taken; false: refused or failed (the caller gives
 * the slots back). */
static bool admit(server_t *s, listener_t *l, uv_stream_t *ls, bool tls) {
    service_t *svc = l->svc;
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        return false;
    }
    c->l = l;
    list_init(&c->node);
    list_init(&c->pending);
    uv_tcp_init(&s->loop, &c->tcp);
    conn_set_accepted(c, uv_hrtime());
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
        return false;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char peer[96], ip[IPLIMIT_KEY_MAX] = "";
    format_peer(&c->tcp, peer, sizeof(peer));
    if (svc->limits) {
        security_addr_ip(peer, ip, sizeof(ip));
        int lim = net_ip_accept(s, ip);
        if (lim != IPLIMIT_OK) {
            if (lim == IPLIMIT_RATE)
                svc->st.refused_rate_per_ip++;
            else
                svc->st.refused_per_ip++;
            log_ratelimited(&s->sh->iplimit_log, LOG_WARN, "refusing %s on %s: %s", peer, l->name,
                            iplimit_strerror(lim));
            uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
            return false;
        }
    }
    uint32_t tls_per_ip = s->cfg->mqtt.max_tls_handshakes_per_ip;
    if (svc->limits && tls && tls_per_ip) {
        /* One address cannot take every handshake slot (and worker turn). */
        int lim = net_ip_handshake_begin(s, ip, tls_per_ip);
        if (lim != IPLIMIT_OK) {
            svc->st.tls_handshake_failures++;
            if (lim == IPLIMIT_HANDSHAKES)
                log_ratelimited(&s->sh->iplimit_log, LOG_WARN,
                                "refusing %s on %s: mqtt.max_tls_handshakes_per_ip %u in progress",
                                peer, l->name, tls_per_ip);
            else
                log_ratelimited(&s->sh->iplimit_log, LOG_WARN, "refusing %s on %s: %s", peer,
                                l->name, iplimit_strerror(lim));
            net_ip_release(s, ip);
            uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
            return false;
        }
        c->tls_counted_ip = true;
    }
    c->tls_counted = tls; /* it starts in CONN_HANDSHAKE */
    c->since_ms = uv_now(&s->loop);
    if (!(c->tr = transport_conn_new(&l->stack, peer)) ||
        !(c->pc = svc->p.ops->conn_open(svc->p.ud, c, peer))) {
        transport_conn_free(c->tr);
        if (svc->limits)
            net_ip_release(s, ip);
        if (c->tls_counted_ip)
            net_ip_handshake_end(s, ip);
        uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
        return false;
    }
    c->counted_ip = svc->limits; /* released with the protocol's address, see conn_t */
    list_insert_head(&s->conns, &c->node);
    svc->n_conns++;
    svc->st.accepted++;
    if (svc->limits) /* the metrics listener's accepts are not logged */
        log_debug("accepted %s on %s", peer, l->name);
    if (!c->tr->type->handshake)
        conn_set_state(c, CONN_OPEN);
    conn_read_start(c);
    return true;
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
    /* max_connections counts every worker's connections. */
    if (svc->limits && !take_slot(&s->sh->conns, s->cfg->mqtt.max_connections)) {
        refuse_over_max(s, l, ls, false);
        return;
    }
    bool tls = false; /* its handshake's private-key work waits for a worker */
    for (size_t i = 0; i < l->stack.n; i++)
        tls |= strcmp(l->stack.type[i]->name, "TLS") == 0;
    tls = tls && svc->limits;
    if (tls && !take_slot(&s->sh->handshakes, s->cfg->mqtt.max_tls_handshakes)) {
        atomic_fetch_sub(&s->sh->conns, 1);
        refuse_over_max(s, l, ls, true);
        return;
    }
    if (admit(s, l, ls, tls))
        return;
    if (svc->limits)
        atomic_fetch_sub(&s->sh->conns, 1);
    if (tls)
        atomic_fetch_sub(&s->sh->handshakes, 1);
}
