/* The introspection endpoint's JSON pages (introspect.h). */
#include "ops/introspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

struct ops_list {
    ops_list_kind_t kind;
    size_t offset, limit, n, bytes;
    cJSON *items;
};

ops_list_t *ops_list_new(ops_list_kind_t kind, size_t offset, size_t limit) {
    ops_list_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->kind = kind;
    l->offset = offset;
    l->limit = limit;
    l->bytes = 256; /* the envelope */
    l->items = cJSON_CreateArray();
    if (!l->items) {
        free(l);
        return NULL;
    }
    return l;
}

void ops_rfc3339(int64_t unix_ms, char *out, size_t cap) {
    time_t s = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", day, (int)(unix_ms % 1000));
}

/* Whether an item of strings this long fits in the page: an escaped byte
 * takes at most 6 ("\u00XX"), the names and numbers fit in 256. */
static bool fits(ops_list_t *l, size_t strings) {
    size_t need = 6 * strings + 256;
    if (l->n >= l->limit || (l->n > 0 && l->bytes + need > OPS_LIST_MAX_BYTES))
        return false;
    l->bytes += need;
    return true;
}

static bool add(ops_list_t *l, cJSON *o, bool ok) {
    if (!o || !ok) {
        cJSON_Delete(o);
        return false;
    }
    cJSON_AddItemToArray(l->items, o);
    l->n++;
    return true;
}

bool ops_list_add_client(ops_list_t *l, const ops_client_t *c) {
    size_t strings = strlen(c->client_id) + strlen(c->address) + strlen(c->protocol) +
                     strlen(c->listener) + (c->username ? strlen(c->username) : 0);
    if (!fits(l, strings))
        return false;
    char since[40];
    ops_rfc3339(c->connected_since_ms, since, sizeof(since));
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "client_id", c->client_id) &&
              cJSON_AddStringToObject(o, "address", c->address) &&
              (c->username ? cJSON_AddStringToObject(o, "username", c->username) != NULL
                           : cJSON_AddNullToObject(o, "username") != NULL) &&
              cJSON_AddStringToObject(o, "protocol", c->protocol) &&
              cJSON_AddStringToObject(o, "listener", c->listener) &&
              cJSON_AddStringToObject(o, "connected_since", since) &&
              cJSON_AddNumberToObject(o, "in_flight", c->in_flight) &&
              cJSON_AddBoolToObject(o, "paused", c->paused);
    return add(l, o, ok);
}

bool ops_list_add_session(ops_list_t *l, const ops_session_t *s) {
    if (!fits(l, strlen(s->client_id)))
        return false;
    char since[40];
    ops_rfc3339(s->disconnected_since_ms, since, sizeof(since));
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "client_id", s->client_id) &&
              cJSON_AddStringToObject(o, "disconnected_since", since) &&
              cJSON_AddNumberToObject(o, "in_flight", s->in_flight) &&
              cJSON_AddNumberToObject(o, "bytes_held", (double)s->bytes_held);
    return add(l, o, ok);
}

char *ops_list_finish(ops_list_t *l, size_t total, size_t *len) {
    cJSON *doc = cJSON_CreateObject();
    char *out = NULL;
    size_t next = l->offset + l->n;
    bool ok = doc && cJSON_AddNumberToObject(doc, "total", (double)total) &&
              cJSON_AddNumberToObject(doc, "offset", (double)l->offset) &&
              cJSON_AddNumberToObject(doc, "limit", (double)l->limit) &&
              (next < total ? cJSON_AddNumberToObject(doc, "next_offset", (double)next) != NULL
                            : cJSON_AddNullToObject(doc, "next_offset") != NULL);
    if (ok) {
        cJSON_AddItemToObject(doc, l->kind == OPS_LIST_CLIENTS ? "clients" : "sessions", l->items);
        l->items = NULL;
        out = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(doc);
    cJSON_Delete(l->items);
    free(l);
    if (!out)
        return NULL;
    size_t n = strlen(out);
    /* A newline, as the other endpoints end their bodies. */
    char *body = realloc(out, n + 2);
    if (!body) {
        cJSON_free(out);
        return NULL;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    *len = n + 1;
    return body;
}
