/* Listener addresses: "IPv4:port" and "[IPv6]:port", parsed and compared
 * (config.h: config_parse_listen; settings.h: the cfg_ helpers). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "settings.h"

/* ---- host:port ---- */

int config_parse_listen(const char *s, char **host, uint16_t *port, const char **why) {
    const char *colon;
    char addr[64];
    unsigned char bin[16];
    size_t hlen;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after the IPv6 address";
            return -1;
        }
        if (rb[1] != ':') {
            *why = "missing ':port'";
            return -1;
        }
        colon = rb + 1;
        hlen = (size_t)(rb - s - 1);
        if (hlen >= sizeof(addr)) {
            *why = "not an IPv6 address";
            return -1;
        }
        memcpy(addr, s + 1, hlen);
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing ':port'";
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) {
            *why = "an IPv6 address needs brackets: \"[::]:1883\"";
            return -1;
        }
        if (hlen >= sizeof(addr)) {
            *why = "not an IPv4 address (host names are not resolved)";
            return -1;
        }
        memcpy(addr, s, hlen);
    }
    addr[hlen] = '\0';
    const char *ps = colon + 1;
    unsigned long p = 0;
    bool port_ok = ps[0] != '\0' && strlen(ps) <= 5;
    for (const char *q = ps; port_ok && *q; q++)
        port_ok = *q >= '0' && *q <= '9';
    if (port_ok)
        p = strtoul(ps, NULL, 10);
    /* Port 0: the kernel picks a free port and the log names it (tests). */
    if (!port_ok || p > 65535) {
        *why = "the port must be a number from 0 to 65535";
        return -1;
    }
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1) {
        *why = v6 ? "not an IPv6 address" : "not an IPv4 address (host names are not resolved)";
        return -1;
    }
    *host = strdup(addr);
    if (!*host) {
        *why = "out of memory";
        return -1;
    }
    *port = (uint16_t)p;
    return 0;
}

/* Same address family, bytes and port. */
bool cfg_same_endpoint(const char *h1, uint16_t p1, const char *h2, uint16_t p2) {
    unsigned char a[16] = {0}, b[16] = {0};
    /* Port 0 binds any free port: two of them never collide. */
    if (p1 != p2 || p1 == 0)
        return false;
    bool v6a = strchr(h1, ':') != NULL, v6b = strchr(h2, ':') != NULL;
    if (v6a != v6b)
        return false;
    inet_pton(v6a ? AF_INET6 : AF_INET, h1, a);
    inet_pton(v6b ? AF_INET6 : AF_INET, h2, b);
    return memcmp(a, b, 16) == 0;
}

int cfg_get_listen(parse_ctx_t *c, const yaml_node_t *n, const char *where, const char **s,
                   char **host, uint16_t *port) {
    const char *why;
    if (cfg_get_string(c, n, where, s) < 0)
        return -1;
    if (config_parse_listen(*s, host, port, &why) < 0) {
        cfg_err(c, cfg_pos_of(n), "%s: expected \"host:port\" or \"[IPv6]:port\", got \"%s\": %s",
                where, *s, why);
        return -1;
    }
    return 0;
}
