#include "ops/http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "ops/introspect.h"
#include "ops/metrics.h"

struct http_conn {
    http_parser parser;
    http_handlers_t h;
    size_t consumed; /* request bytes parsed so far */
    bool head_done;  /* headers complete */
    bool url_too_long;
    int status; /* of the response written; 0 before */
    size_t url_len;
    char url[HTTP_MAX_URL + 1];
};

static const char *reason_phrase(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

#define TEXT_PLAIN "text/plain; charset=utf-8"

/* Writes one complete response; with `head_only` the body is left out but
 * Content-Length still gives its size (RFC 9110 9.3.2). */
static void respond(http_conn_t *c, int status, const char *content_type, const char *body,
                    size_t body_len, bool head_only) {
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n"
                     "\r\n",
                     status, reason_phrase(status), content_type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    c->status = status;
    c->h.write(c->h.ud, head, (size_t)n);
    if (!head_only && body_len > 0)
        c->h.write(c->h.ud, body, body_len);
}

static void respond_text(http_conn_t *c, int status, const char *body, bool head_only) {
    respond(c, status, TEXT_PLAIN, body, strlen(body), head_only);
}

/* The path part of the request target: origin form "/p?q" or absolute form
 * "http://h/p?q". Returns false when the target does not parse. */
static bool request_path(const http_conn_t *c, const char **path, size_t *len) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0)
        return false;
    if (!(u.field_set & (1 << UF_PATH))) {
        *path = "/";
        *len = 1;
        return true;
    }
    *path = c->url + u.field_data[UF_PATH].off;
    *len = u.field_data[UF_PATH].len;
    return true;
}

static bool path_is(const char *path, size_t len, const char *want) {
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

/* A decimal parameter of the query "a=1&b=2" (`q`, `qlen`): 1 with *v, 0 when
 * absent, -1 when not digits or above max. */
static int query_uint(const char *q, size_t qlen, const char *name, size_t max, size_t *v) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i < qlen;) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        if (end - i > nlen && memcmp(q + i, name, nlen) == 0 && q[i + nlen] == '=') {
            size_t val = 0, j = i + nlen + 1;
            if (j == end)
                return -1;
            for (; j < end; j++) {
                if (q[j] < '0' || q[j] > '9')
                    return -1;
                val = val * 10 + (size_t)(q[j] - '0');
                if (val > max)
                    return -1;
            }
            *v = val;
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* GET /clients, /sessions: a JSON page (introspect.h) for offset and limit. */
static void respond_list(http_conn_t *c, int kind, bool head_only) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    const char *q = "";
    size_t qlen = 0;
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) == 0 && (u.field_set & (1 << UF_QUERY))) {
        q = c->url + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    size_t offset = 0, limit = OPS_LIST_DEFAULT_LIMIT;
    if (query_uint(q, qlen, "offset", 1000000000, &offset) < 0) {
        respond_text(c, 400, "bad request: offset must be an integer from 0 to 1000000000\n",
                     head_only);
        return;
    }
    if (query_uint(q, qlen, "limit", OPS_LIST_MAX_LIMIT, &limit) < 0 || limit == 0) {
        respond_text(c, 400, "bad request: limit must be an integer from 1 to 1000\n", head_only);
        return;
    }
    size_t len = 0;
    char *body = c->h.list(c->h.ud, kind, offset, limit, &len);
    if (!body) {
        respond_text(c, 500, "out of memory\n", head_only);
        return;
    }
    respond(c, 200, "application/json", body, len, head_only);
    free(body);
}

static void route(http_conn_t *c) {
    enum http_method m = (enum http_method)c->parser.method;
    bool head_only = m == HTTP_HEAD;
    if (c->parser.http_major != 1) { /* http_parser accepts any digit */
        respond_text(c, 505, "HTTP version not supported\n", false);
        return;
    }
    if (c->url_too_long) {
        respond_text(c, 414, "URI too long\n", false);
        return;
    }
    if (m != HTTP_GET && m != HTTP_HEAD) {
        respond_text(c, 405, "method not allowed\n", false);
        return;
    }
    const char *path;
    size_t len;
    if (!request_path(c, &path, &len)) {
        respond_text(c, 400, "bad request\n", false);
        return;
    }
    if (path_is(path, len, "/metrics") && c->h.metrics) {
        size_t body_len = 0;
        char *body = c->h.metrics(c->h.ud, &body_len);
        if (!body) {
            respond_text(c, 500, "metrics unavailable\n", head_only);
            return;
        }
        respond(c, 200, METRICS_CONTENT_TYPE, body, body_len, head_only);
        free(body);
    } else if (c->h.list && (path_is(path, len, "/clients") || path_is(path, len, "/sessions"))) {
        respond_list(c, path_is(path, len, "/clients") ? OPS_LIST_CLIENTS : OPS_LIST_SESSIONS,
                     head_only);
    } else if (path_is(path, len, "/healthz")) {
        respond_text(c, 200, "ok\n", head_only);
    } else if (path_is(path, len, "/readyz")) {
        char reason[256] = "";
        if (!c->h.ready || c->h.ready(c->h.ud, reason, sizeof(reason))) {
            respond_text(c, 200, "ready\n", head_only);
        } else {
            char body[300];
            /* the reason is one line: cut at a newline the callback may have left */
            reason[strcspn(reason, "\r\n")] = '\0';
            snprintf(body, sizeof(body), "not ready: %s\n", reason[0] ? reason : "unknown");
            respond_text(c, 503, body, head_only);
        }
    } else {
        respond_text(c, 404, "not found\n", head_only);
    }
}

static int on_url(http_parser *p, const char *at, size_t len) {
    http_conn_t *c = p->data;
    if (c->url_len + len > HTTP_MAX_URL) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p) {
    http_conn_t *c = p->data;
    c->head_done = true;
    return 0;
}

static int on_message_complete(http_parser *p) {
    http_conn_t *c = p->data;
    route(c);
    /* One request per connection: stop here, ignore anything pipelined. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

http_conn_t *http_conn_new(const http_handlers_t *h) {
    http_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->h = *h;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    return c;
}

void http_conn_free(http_conn_t *c) {
    free(c);
}

int http_feed(http_conn_t *c, const char *buf, size_t len) {
    if (c->status)
        return HTTP_DONE;
    if (len == 0) /* http_parser takes a length of 0 for end of input */
        return HTTP_MORE;
    size_t room = HTTP_MAX_REQUEST - c->consumed;
    size_t n = len < room ? len : room;
    /* n == 0 would tell http_parser the input ended */
    size_t parsed = n > 0 ? http_parser_execute(&c->parser, &settings, buf, n) : 0;
    c->consumed += parsed;
    if (c->status)
        return HTTP_DONE;
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        respond_text(c, 400, "bad request\n", false);
        return HTTP_DONE;
    }
    if (n < len) { /* more than HTTP_MAX_REQUEST bytes without a complete request */
        if (c->head_done)
            respond_text(c, 413, "request too large\n", false);
        else
            respond_text(c, 431, "request header fields too large\n", false);
        return HTTP_DONE;
    }
    return HTTP_MORE;
}

int http_timeout(http_conn_t *c) {
    if (!c->status)
        respond_text(c, 408, "request timeout\n", false);
    return HTTP_DONE;
}

int http_status(const http_conn_t *c) {
    return c->status;
}
