/* The JSON documents of the introspection endpoint (GET /clients, GET
 * /sessions on the metrics listener; http.c parses the query): a page of at
 * most `limit` items from `offset`, with the total and the next offset,
 * bounded in bytes. cJSON is used here only (and in metrics.c). */
#ifndef M2K_OPS_INTROSPECT_H
#define M2K_OPS_INTROSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OPS_LIST_DEFAULT_LIMIT 100
#define OPS_LIST_MAX_LIMIT 1000
/* A page stops before an item that would take it past this many bytes (one
 * item always fits: a client id is at most 65,535 bytes); next_offset then
 * names that item. */
#define OPS_LIST_MAX_BYTES (1024 * 1024)

typedef enum { OPS_LIST_CLIENTS = 0, OPS_LIST_SESSIONS = 1 } ops_list_kind_t;

typedef struct {
    const char *client_id;
    const char *address;
    const char *username; /* NULL: none */
    const char *protocol; /* "3.1", "3.1.1", "5.0" */
    const char *listener;
    int64_t connected_since_ms; /* Unix ms */
    uint32_t in_flight;
    bool paused;
} ops_client_t;

typedef struct {
    const char *client_id;
    int64_t disconnected_since_ms; /* Unix ms */
    uint32_t in_flight;
    uint64_t bytes_held;
} ops_session_t;

typedef struct ops_list ops_list_t;

/* A page from `offset`, at most `limit` items. NULL when out of memory. */
ops_list_t *ops_list_new(ops_list_kind_t kind, size_t offset, size_t limit);
/* Adds an item; false when it was not added (the limit or the byte bound is
 * reached, or no memory): stop adding. */
bool ops_list_add_client(ops_list_t *l, const ops_client_t *c);
bool ops_list_add_session(ops_list_t *l, const ops_session_t *s);
/* The document (malloc'd, *len bytes, NUL-terminated) with `total` items in
 * all; frees l. NULL when out of memory. */
char *ops_list_finish(ops_list_t *l, size_t total, size_t *len);
/* "2026-12-06T02:50:00.123Z" for Unix ms (RFC 3339, UTC); out >= 25 bytes. */
void ops_rfc3339(int64_t unix_ms, char *out, size_t cap);

#endif
