/* The introspection endpoint's pages (GET /clients, GET /sessions on the
 * metrics listener): the session manager's read-only views with the
 * accepting listener and the accept time from the server, as
 * ops/introspect.h's JSON. */
#ifndef M2K_INTROSPECT_H
#define M2K_INTROSPECT_H

#include <stddef.h>

#include "mqtt/session.h"
#include "net/server.h"

/* A page of `kind` (ops_list_kind_t) from `offset`, at most `limit` items
 * (malloc'd JSON, *len bytes) over the n session managers (one per worker,
 * in worker order; the caller keeps them still); NULL when out of memory. */
char *introspect_page(const session_mgr_t *const *sm, size_t n, const server_t *srv, int kind,
                      size_t offset, size_t limit, size_t *len);

#endif
