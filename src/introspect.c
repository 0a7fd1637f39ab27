/* The introspection endpoint's pages (introspect.h). */
#include "introspect.h"

#include "ops/introspect.h"

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
        .connected_since_ms = wall_of(w, server_conn_accepted_ms(conn)),
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

char *introspect_page(const session_mgr_t *const *sm, size_t n, const server_t *srv, int kind,
                      size_t offset, size_t limit, size_t *len) {
    walk_t w = {ops_list_new(kind, offset, limit), server_wall_ms(), server_now_ms(srv)};
    if (!w.page)
        return NULL;
    /* One list over every worker: each skips what the offset leaves of it. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t skip = offset > total ? offset - total : 0;
        total += kind == OPS_LIST_CLIENTS
                     ? session_mgr_list_clients(sm[i], skip, each_client, &w)
                     : session_mgr_list_detached(sm[i], skip, each_session, &w);
    }
    return ops_list_finish(w.page, total, len);
}
