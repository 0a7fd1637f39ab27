/* The loop, listeners, timers, signals and the server's lifecycle (see
 * server.h); each connection's life is in conn.c, the byte-stream layers in
 * transport*.c. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"

#include <sys/socket.h>
#include <unistd.h>

#define STOP_GRACE_MS 2000

int64_t server_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t server_now_ms(const server_t *s) {
    return uv_now(&s->loop);
}

void net_set_now(server_t *s) {
    uint64_t mono = uv_now(&s->loop);
    int64_t wall = server_wall_ms();
    uint64_t us = uv_hrtime() / 1000u;
    for (int i = 0; i < SERVICE_COUNT; i++) {
        const server_protocol_t *p = &s->svc[i].p;
        if (p->ops && p->ops->set_now)
            p->ops->set_now(p->ud, mono, wall, us);
    }
}

/* ---- listeners --------------------------------------------------------------- */

/* With several workers, each binds the same address with SO_REUSEPORT and
 * the kernel spreads the connections (libuv 1.44 has no UV_TCP_REUSEPORT,
 * so the socket is made here and handed to libuv). 0 or a libuv error. */
static int bind_reuseport(listener_t *l, const struct sockaddr *sa, bool v6) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int on = 1;
    int r = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (r == 0)
        r = setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (r == 0 && v6)
        r = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (r == 0)
        r = bind(fd, sa, v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (r != 0) {
        r = uv_translate_sys_error(errno);
        close(fd);
        return r;
    }
    r = uv_tcp_open(&l->tcp, fd);
    if (r != 0)
        close(fd);
    return r;
}

/* Binds l to host:port and listens; `what` names it in errors ("listener
 * 0.0.0.0:1883"). The bound host and port go to host/l->port, so that port 0
 * (any free port) is named in the log. */
static int listener_open(server_t *s, listener_t *l, const char *host, uint16_t port, int backlog,
                         const char *what, char *bound_host, size_t host_cap, char *errbuf,
                         size_t errlen) {
    struct sockaddr_storage ss;
    bool v6 = strchr(host, ':') != NULL;
    int r = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
               : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    l->srv = s;
    if (r < 0) {
        snprintf(errbuf, errlen, "%s: bad address: %s", what, uv_strerror(r));
        return -1;
    }
    uv_tcp_init(&s->loop, &l->tcp);
    l->tcp.data = l;
    if (l == &s->metrics)
        s->have_metrics = true;
    else
        s->n_listeners++;
    /* IPV6ONLY lets "[::]:1883" and "0.0.0.0:1883" both be listed. */
    if (s->o.reuseport && l != &s->metrics)
        r = bind_reuseport(l, (struct sockaddr *)&ss, v6);
    else
        r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, backlog, conn_on_connection);
    if (r < 0) {
        snprintf(errbuf, errlen, "%s: %s", what, uv_strerror(r));
        return -1;
    }
    struct sockaddr_storage b;
    int blen = sizeof(b);
    snprintf(bound_host, host_cap, "?");
    l->port = port;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&b, &blen) == 0) {
        if (b.ss_family == AF_INET6) {
            uv_ip6_name((const struct sockaddr_in6 *)&b, bound_host, host_cap);
            l->port = ntohs(((const struct sockaddr_in6 *)&b)->sin6_port);
        } else {
            uv_ip4_name((const struct sockaddr_in *)&b, bound_host, host_cap);
            l->port = ntohs(((const struct sockaddr_in *)&b)->sin_port);
        }
    }
    return 0;
}

int server_listen_metrics(server_t *s, char *errbuf, size_t errlen) {
    if (s->have_metrics || !s->cfg->metrics_listen || !s->svc[SERVICE_HTTP].p.ops)
        return 0;
    const config_t *cfg = s->cfg;
    listener_t *l = &s->metrics;
    char what[128], host[INET6_ADDRSTRLEN];
    snprintf(l->name, sizeof(l->name), "%s", cfg->metrics_listen);
    snprintf(what, sizeof(what), "metrics listener %s", cfg->metrics_listen);
    l->svc = &s->svc[SERVICE_HTTP];
    if (listener_open(s, l, cfg->metrics_host, cfg->metrics_port, 64, what, host, sizeof(host),
                      errbuf, errlen) != 0)
        return -1;
    log_info(strchr(cfg->metrics_host, ':')
                 ? "metrics listening on [%s]:%d (GET /metrics, /healthz, /readyz)"
                 : "metrics listening on %s:%d (GET /metrics, /healthz, /readyz)",
             cfg->metrics_host, l->port);
    return 0;
}

int server_listen(server_t *s, char *errbuf, size_t errlen) {
    s->listeners = calloc(s->cfg->n_listeners ? s->cfg->n_listeners : 1, sizeof(listener_t));
    if (!s->listeners) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    /* Not s->cfg->n_listeners later: a reloaded configuration may list
     * others (they need a restart), while these stay. */
    s->n_listener_slots = s->cfg->n_listeners;
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        const config_listener_t *cl = &s->cfg->listeners[i];
        listener_t *l = &s->listeners[i];
        char what[128], label[64], host[INET6_ADDRSTRLEN], why[512];
        l->cfg = cl;
        l->svc = &s->svc[SERVICE_MQTT];
        snprintf(what, sizeof(what), "listener %s", cl->listen);
        if (transport_stack_init(&l->stack, cl, why, sizeof(why)) != 0) {
            snprintf(errbuf, errlen, "%s: %s", what, why);
            return -1;
        }
        transport_stack_label(&l->stack, label, sizeof(label));
        snprintf(l->name, sizeof(l->name), "%s%s", cl->listen, label);
        /* Port 0: the other workers bind the port the first one got. */
        uint16_t port =
            s->o.first && i < s->o.first->n_listening ? s->o.first->listeners[i].port : cl->port;
        if (listener_open(s, l, cl->host, port, 511, what, host, sizeof(host), errbuf, errlen) != 0)
            return -1;
        s->n_listening++;
        /* Once for the process: the other workers' sockets at debug level. */
        log_write(s->o.first ? LOG_DEBUG : LOG_INFO,
                  strchr(cl->host, ':') ? "listening on [%s]:%d%s" : "listening on %s:%d%s", host,
                  l->port, label);
    }
    return server_listen_metrics(s, errbuf, errlen);
}

uint16_t server_listener_port(const server_t *s, size_t i) {
    return i < s->n_listening ? s->listeners[i].port : 0;
}

/* ---- timers, signals, fd ----------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
    server_t *s = t->data;
    net_set_now(s);
    uint64_t now = uv_now(&s->loop);
    conn_check_handshakes(s, now);
    conn_check_partial(s, now);
    for (int i = 0; i < SERVICE_COUNT; i++) {
        const server_protocol_t *p = &s->svc[i].p;
        if (p->ops && p->ops->tick)
            p->ops->tick(p->ud);
    }
    pthread_mutex_lock(&s->sh->mu);
    iplimit_prune(s->sh->iplimit, now);
    pthread_mutex_unlock(&s->sh->mu);
    conn_cut_stragglers(s, now);
    if (s->o.on_tick)
        s->o.on_tick(s->o.ud);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    server_t *s = p->data;
    (void)events;
    if (status < 0) {
        log_error("watching the Kafka %sevent fd: %s", p == &s->poll2 ? "consumer " : "",
                  uv_strerror(status));
        return;
    }
    net_set_now(s);
    if (p == &s->poll2)
        s->o.on_fd2(s->o.ud);
    else if (s->o.on_fd)
        s->o.on_fd(s->o.ud);
}

/* Watches fd with p (on_poll tells the two apart); 0, or -1 with errbuf. */
static int watch(server_t *s, uv_poll_t *p, int fd, bool *have, char *errbuf, size_t errlen) {
    int r = uv_poll_init(&s->loop, p, fd);
    if (r < 0) {
        snprintf(errbuf, errlen, "watching fd %d: %s", fd, uv_strerror(r));
        return -1;
    }
    *have = true;
    p->data = s;
    uv_poll_start(p, UV_READABLE, on_poll);
    return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
    server_t *s = h->data;
    if (s->o.on_signal)
        s->o.on_signal(s->o.ud, signum);
}

/* ---- public -------------------------------------------------------------------------- */

int server_new(const server_opts_t *opts, server_t **out, char *errbuf, size_t errlen) {
    server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    s->o = *opts;
    s->cfg = opts->cfg;
    s->tick_ms = 1000;
    s->svc[SERVICE_MQTT] = (service_t){.p = opts->mqtt, .limits = true};
    s->svc[SERVICE_HTTP] = (service_t){.p = opts->http};
    list_init(&s->conns);
    list_init(&s->pending);
    list_init(&s->jobs);
    s->rbuf = malloc(READ_BUF_SIZE);
    s->sh = opts->shared;
    if (!s->sh) {
        s->sh = server_shared_new(s->cfg);
        s->own_sh = true;
    }
    s->sh_idx = SHARED_SERVERS_MAX;
    if (s->sh && (s->sh_idx = atomic_fetch_add(&s->sh->n_servers, 1)) < SHARED_SERVERS_MAX)
        atomic_store(&s->sh->servers[s->sh_idx], s);
    int r = s->rbuf && s->sh ? uv_loop_init(&s->loop) : UV_ENOMEM;
    if (r == 0 && net_inbox_init(s) != 0) {
        uv_loop_close(&s->loop);
        r = UV_ENOMEM;
    }
    if (r < 0) {
        snprintf(errbuf, errlen, "event loop: %s", uv_strerror(r));
        free(s->rbuf);
        if (s->own_sh)
            server_shared_free(s->sh);
        free(s);
        return -1;
    }
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
    uv_timer_init(&s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_check_init(&s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, conn_on_check);
    uv_idle_init(&s->loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(&s->loop, &s->periodic);
    s->periodic.data = s;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    /* The signals are the first worker's (the others pass no on_signal). */
    for (int i = 0; i < 3 && opts->on_signal; i++) {
        uv_signal_init(&s->loop, &s->sig[i]);
        s->sig[i].data = s;
        uv_signal_start(&s->sig[i], on_signal, sigs[i]);
    }
    if ((opts->watch_fd >= 0 &&
         watch(s, &s->poll, opts->watch_fd, &s->have_poll, errbuf, errlen) != 0) ||
        (opts->on_fd2 &&
         watch(s, &s->poll2, opts->watch_fd2, &s->have_poll2, errbuf, errlen) != 0)) {
        server_stop(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        server_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void server_set_config(server_t *s, const config_t *cfg) {
    const config_mqtt_t *mq = &cfg->mqtt;
    s->cfg = cfg;
    s->o.cfg = cfg;
    /* The address table keeps its size (max_connections at start + 4096). */
    pthread_mutex_lock(&s->sh->mu);
    iplimit_set_limits(s->sh->iplimit, mq->max_connections_per_ip, mq->connect_rate_per_ip,
                       mq->connect_burst_per_ip);
    pthread_mutex_unlock(&s->sh->mu);
}

static void on_periodic(uv_timer_t *t) {
    server_t *s = t->data;
    if (s->periodic_cb)
        s->periodic_cb(s->o.ud);
}

void server_set_periodic(server_t *s, unsigned period_ms, void (*cb)(void *ud)) {
    if (s->stopping)
        return;
    s->periodic_cb = cb;
    if (period_ms == 0 || !cb)
        uv_timer_stop(&s->periodic);
    else
        uv_timer_start(&s->periodic, on_periodic, period_ms, period_ms);
}

int server_run(server_t *s) {
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return 0;
}

void server_run_once(server_t *s) {
    uv_run(&s->loop, UV_RUN_NOWAIT);
}

void server_set_tick(server_t *s, unsigned ms) {
    s->tick_ms = ms ? ms : 1;
    if (uv_is_active((uv_handle_t *)&s->tick))
        uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
}

void server_stop_accepting(server_t *s) {
    for (size_t i = 0; i < s->n_listeners; i++)
        if (!uv_is_closing((uv_handle_t *)&s->listeners[i].tcp))
            uv_close((uv_handle_t *)&s->listeners[i].tcp, NULL);
}

void server_stop_reading(server_t *s) {
    s->intake_stopped = true;
    conn_stop_reading_all(s);
}

static void on_stop_timer(uv_timer_t *t) {
    conn_cut_all(t->data);
}

void server_stop(server_t *s) {
    if (s->stopping)
        return;
    s->stopping = true;
    s->intake_stopped = true;
    server_stop_accepting(s);
    conn_close_all(s);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->periodic, NULL);
    if (s->have_metrics)
        uv_close((uv_handle_t *)&s->metrics.tcp, NULL);
    forward_stop(s);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->idle, NULL);
    /* Signal watchers stay installed (unreferenced, so the loop can end): a
     * second SIGTERM during the last steps must not kill the process. */
    for (int i = 0; i < 3 && s->o.on_signal; i++)
        uv_unref((uv_handle_t *)&s->sig[i]);
    net_inbox_close(s);
    if (s->have_poll)
        uv_close((uv_handle_t *)&s->poll, NULL);
    if (s->have_poll2)
        uv_close((uv_handle_t *)&s->poll2, NULL);
    /* Pending output and the shutdowns go out now; the timer cuts stragglers. */
    conn_process_pending(s);
    if (!list_empty(&s->conns)) {
        uv_timer_start(&s->stop_timer, on_stop_timer, STOP_GRACE_MS, 0);
    } else if (!s->stop_timer_closed) {
        s->stop_timer_closed = true;
        uv_close((uv_handle_t *)&s->stop_timer, NULL);
    }
}

void server_free(server_t *s) {
    if (!s)
        return;
    net_work_drain(s); /* their done() may still use the protocol's objects */
    for (int i = 0; i < 3 && s->o.on_signal; i++)
        uv_close((uv_handle_t *)&s->sig[i], NULL);
    uv_run(&s->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&s->loop) != 0)
        log_warn("event loop closed with handles still open");
    for (size_t i = 0; s->listeners && i < s->n_listener_slots; i++)
        transport_stack_free(&s->listeners[i].stack);
    free(s->listeners);
    forward_free(s);
    free(s->rbuf);
    if (s->sh_idx < SHARED_SERVERS_MAX)
        atomic_store(&s->sh->servers[s->sh_idx], NULL);
    net_inbox_free(s);
    if (s->own_sh)
        server_shared_free(s->sh);
    free(s);
}

/* ---- SIGHUP: the transports' reload (TLS certificates) ------------------------------ */

struct server_tls_update {
    size_t n;
    struct {
        const transport_stack_t *stack;
        void *upd[TRANSPORT_MAX_LAYERS];
    } l[]; /* per listener slot */
};

int server_tls_prepare(server_t *s, const config_t *next, server_tls_update_t **out, char *errbuf,
                       size_t errlen) {
    *out = NULL;
    errbuf[0] = '\0';
    size_t n_reloadable = 0;
    for (size_t i = 0; i < s->n_listener_slots; i++)
        n_reloadable += transport_stack_reloadable(&s->listeners[i].stack);
    if (n_reloadable == 0)
        return 0;
    server_tls_update_t *u = calloc(1, sizeof(*u) + s->n_listener_slots * sizeof(u->l[0]));
    if (!u) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    u->n = s->n_listener_slots;
    size_t off = 0;
    int failed = 0;
    for (size_t i = 0; i < u->n; i++) {
        const listener_t *l = &s->listeners[i];
        u->l[i].stack = &l->stack;
        /* l->cfg is the configuration the daemon started with, which lives
         * as long as the server; next's entry counts while the address is the same. */
        const config_listener_t *nl =
            i < next->n_listeners && strcmp(next->listeners[i].listen, l->cfg->listen) == 0
                ? &next->listeners[i]
                : NULL;
        char e[512];
        if (transport_stack_reload_prepare(&l->stack, nl, u->l[i].upd, e, sizeof(e)) == 0)
            continue;
        failed++;
        if (off < errlen) {
            int k = snprintf(errbuf + off, errlen - off, "%slistener %s: %s", off ? "\n" : "",
                             l->name, e);
            off += k > 0 ? (size_t)k : 0;
        }
    }
    if (failed) {
        server_tls_abort(u);
        return -1;
    }
    *out = u;
    return 0;
}

void server_tls_commit(server_t *s, server_tls_update_t *u) {
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        transport_stack_reload_commit(&s->listeners[i].stack, u->l[i].upd, s->listeners[i].name);
    free(u);
}

void server_tls_abort(server_tls_update_t *u) {
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        transport_stack_reload_abort(u->l[i].stack, u->l[i].upd);
    free(u);
}

const server_stats_t *server_stats(const server_t *s) {
    return &s->svc[SERVICE_MQTT].st;
}

size_t server_conn_count(const server_t *s) {
    return s->svc[SERVICE_MQTT].n_conns;
}
