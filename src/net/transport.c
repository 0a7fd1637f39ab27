/* Transport stacks: which layers a listener's connections get, and the walks
 * over a connection's layers (see transport.h). */
#include "transport.h"

#include <stdio.h>
#include <string.h>

#include "util/log.h"

/* Every layer a listener may ask for, bottom first: a new transport is
 * added here (and in its own file). */
static const transport_type_t *const layers[] = {&transport_tls_type, &transport_ws_type};

int transport_stack_init(transport_stack_t *st, const config_listener_t *cl, char *errbuf,
                         size_t errlen) {
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; cl && i < sizeof(layers) / sizeof(layers[0]); i++) {
        char why[512];
        void *ctx = NULL;
        if (layers[i]->listen_new(cl, &ctx, why, sizeof(why)) != 0) {
            snprintf(errbuf, errlen, "%s: %s", layers[i]->name, why);
            transport_stack_free(st);
            return -1;
        }
        if (ctx) {
            st->type[st->n] = layers[i];
            st->ctx[st->n++] = ctx;
        }
    }
    return 0;
}

void transport_stack_free(transport_stack_t *st) {
    for (size_t i = 0; i < st->n; i++)
        st->type[i]->listen_free(st->ctx[i]);
    st->n = 0;
}

void transport_stack_label(const transport_stack_t *st, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < st->n && o < cap; i++) {
        int k = snprintf(out + o, cap - o, "%s%s%s", i ? ", " : " (", st->type[i]->name,
                         i + 1 == st->n ? ")" : "");
        o += k > 0 ? (size_t)k : 0;
    }
}

size_t transport_stack_reloadable(const transport_stack_t *st) {
    size_t n = 0;
    for (size_t i = 0; i < st->n; i++)
        n += st->type[i]->reload_prepare != NULL;
    return n;
}

int transport_stack_reload_prepare(const transport_stack_t *st, const config_listener_t *next,
                                   void *upd[TRANSPORT_MAX_LAYERS], char *errbuf, size_t errlen) {
    for (size_t i = 0; i < st->n; i++) {
        upd[i] = NULL;
        if (st->type[i]->reload_prepare &&
            st->type[i]->reload_prepare(st->ctx[i], next, &upd[i], errbuf, errlen) != 0) {
            transport_stack_reload_abort(st, upd);
            return -1;
        }
    }
    return 0;
}

void transport_stack_reload_commit(transport_stack_t *st, void *upd[TRANSPORT_MAX_LAYERS],
                                   const char *listener_name) {
    for (size_t i = 0; i < st->n; i++) {
        if (upd[i])
            st->type[i]->reload_commit(st->ctx[i], upd[i], listener_name);
        upd[i] = NULL;
    }
}

void transport_stack_reload_abort(const transport_stack_t *st, void *upd[TRANSPORT_MAX_LAYERS]) {
    for (size_t i = 0; i < st->n; i++) {
        if (upd[i])
            st->type[i]->reload_abort(upd[i]);
        upd[i] = NULL;
    }
}

transport_t *transport_conn_new(const transport_stack_t *st, const char *peer) {
    if (st->n == 0)
        return &transport_tcp;
    transport_t *top = NULL;
    for (size_t i = 0; i < st->n; i++) {
        transport_t *t = st->type[i]->conn_new(st->ctx[i]);
        if (!t) {
            log_error("out of memory for the %s state of %s", st->type[i]->name, peer);
            transport_conn_free(top);
            return NULL;
        }
        t->type = st->type[i];
        t->up = NULL;
        t->down = top;
        if (top)
            top->up = t;
        top = t;
    }
    return top;
}

void transport_conn_free(transport_t *top) {
    while (top) {
        transport_t *down = top->down;
        if (top->type->conn_free)
            top->type->conn_free(top);
        top = down;
    }
}

void transport_conn_rebind(transport_t *top, const transport_stack_t *st) {
    size_t i = st->n;
    for (transport_t *t = top; t && t != &transport_tcp && i > 0; t = t->down) {
        i--;
        if (t->type->conn_rebind)
            t->type->conn_rebind(t, st->ctx[i]);
    }
}

/* The bottom layer of the stack whose top is `top`. */
static transport_t *bottom(transport_t *t) {
    while (t && t->down)
        t = t->down;
    return t;
}

void transport_resume(transport_t *top, conn_t *c) {
    for (transport_t *t = bottom(top); t && !net_conn_closing(c); t = t->up)
        if (t->type->resume)
            t->type->resume(t, c);
}

void transport_reopened(transport_t *top, conn_t *c) {
    for (transport_t *t = bottom(top); t && !net_conn_closing(c); t = t->up)
        if (t->type->reopened)
            t->type->reopened(t, c);
}

void transport_input(transport_t *top, conn_t *c, const uint8_t *p, size_t n) {
    transport_t *t = top;
    while (t->down)
        t = t->down;
    t->type->input(t, c, p, n);
}

void transport_shutdown(transport_t *top, conn_t *c) {
    for (transport_t *t = top; t; t = t->down)
        if (t->type->shutdown)
            t->type->shutdown(t, c);
}

const char *transport_handshake_timeout(transport_t *top, conn_t *c, unsigned limit_s) {
    transport_t *t = top;
    while (t->down)
        t = t->down;
    for (; t; t = t->up) {
        const char *why =
            t->type->handshake_timeout ? t->type->handshake_timeout(t, c, limit_s) : NULL;
        if (why)
            return why;
    }
    return NULL;
}
