/* The introspection endpoint's pages (introspect.h). */
#include "introspect.h"

#include "ops/introspect.h"

#include <stdlib.h>

typedef struct {
    ops_list_t *page;
    int64_t wall_now;
    uint64_t mono_now;
} walk_t;

/* A time on the loop's monotonic clock as Unix ms. */
static int64_t wall_of(const walk_t *w, uint64_t mono) {
    return w->wall_now - (int64_t)(w->mono_now - (mono < w->mono_now ? mono : w->mono_now));
}

static const char *protocol_name(int level) {
    return level == 3 ? "3.1" : level == 4 ? "3.1.1" : level == 5 ? "5.0" : "unknown";
}

static bool each_client(void *ctx, const session_client_info_t *i) {
    walk_t *w = ctx;
    const server_conn_t *conn = i->ud; /* the daemon's session_conn_new ud */
    ops_client_t c = {
        .client_id = i->client_id,
        .address = i->remote,
        .username = i->username,
        .protocol = protocol_name(i->protocol_level),
        .listener = server_conn_listener(conn),
        .connected_since_ms = wall_of(w, server_conn_accepted_ns(conn) / 1000000u),
        .in_flight = i->inflight,
        .paused = i->paused,
    };
    return ops_list_add_client(w->page, &c);
}

static bool each_session(void *ctx, const session_detached_info_t *i) {
    walk_t *w = ctx;
    ops_session_t s = {i->client_id, wall_of(w, i->detached_ms), i->inflight, i->bytes_held};
    return ops_list_add_session(w->page, &s);
}

/* Several workers: every entry gathered (the caller keeps them still),
 * ordered oldest first as one worker lists them (a tie keeps the workers'
 * order, and each worker's own), then paged. */
typedef struct {
    uint64_t at; /* accept time (ns: exact across workers) or detach time (ms) */
    size_t seq;  /* gathered: worker by worker, each oldest first */
    session_client_info_t c;
    session_detached_info_t s;
} entry_t;

typedef struct {
    size_t n, cap;
    entry_t *e;
    bool oom;
} gather_t;

static entry_t *gather_next(gather_t *g) {
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        entry_t *e = realloc(g->e, cap * sizeof(*e));
        if (!e) {
            g->oom = true;
            return NULL;
        }
        g->e = e;
        g->cap = cap;
    }
    entry_t *e = &g->e[g->n];
    e->seq = g->n++;
    return e;
}

static bool gather_client(void *ctx, const session_client_info_t *i) {
    entry_t *e = gather_next(ctx);
    if (!e)
        return false;
    e->c = *i;
    e->at = server_conn_accepted_ns(i->ud);
    return true;
}

static bool gather_session(void *ctx, const session_detached_info_t *i) {
    entry_t *e = gather_next(ctx);
    if (!e)
        return false;
    e->s = *i;
    e->at = i->detached_ms;
    return true;
}

static int by_time(const void *a, const void *b) {
    const entry_t *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

char *introspect_page(const session_mgr_t *const *sm, size_t n, const server_t *srv, int kind,
                      size_t offset, size_t limit, size_t *len) {
    walk_t w = {ops_list_new(kind, offset, limit), server_wall_ms(), server_now_ms(srv)};
    if (!w.page)
        return NULL;
    bool clients = kind == OPS_LIST_CLIENTS;
    if (n == 1) {
        size_t total = clients ? session_mgr_list_clients(sm[0], offset, each_client, &w)
                               : session_mgr_list_detached(sm[0], offset, each_session, &w);
        return ops_list_finish(w.page, total, len);
    }
    gather_t g = {0};
    for (size_t i = 0; i < n && !g.oom; i++) {
        if (clients)
            session_mgr_list_clients(sm[i], 0, gather_client, &g);
        else
            session_mgr_list_detached(sm[i], 0, gather_session, &g);
    }
    char *page = NULL;
    if (!g.oom) {
        if (g.n)
            qsort(g.e, g.n, sizeof(*g.e), by_time);
        for (size_t i = offset; i < g.n; i++)
            if (clients ? !each_client(&w, &g.e[i].c) : !each_session(&w, &g.e[i].s))
                break;
        page = ops_list_finish(w.page, g.n, len);
    } else {
        free(ops_list_finish(w.page, 0, len));
    }
    free(g.e);
    return page;
}
