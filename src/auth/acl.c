/* Mosquitto-format ACL: parsing and decisions (semantics in acl.h).
 * Users sit in one array sorted by name; each has its deny and allow rules
 * apart, so a decision never depends on the order of lines in the file. */
#include "auth/acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/file_read.h"
#include "mqtt/codec.h"

#include "auth_int.h"

#define ACCESS_DENY 0

typedef struct {
    char *filter;
    size_t flen;
    int access; /* ACL_READ | ACL_WRITE, or ACCESS_DENY */
} rule_t;

typedef struct {
    rule_t *v;
    size_t n, cap;
} rules_t;

typedef struct {
    char *name; /* NULL: clients without a user name */
    size_t nlen;
    rules_t deny, allow;
} acl_user_t;

struct acl {
    acl_user_t *users; /* sorted by name after loading */
    size_t nusers, cap;
    acl_user_t anon;
    rules_t pat_deny, pat_allow;
};

static void rules_free(rules_t *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].filter);
    free(r->v);
}

void acl_free(acl_t *acl) {
    if (!acl)
        return;
    for (size_t i = 0; i < acl->nusers; i++) {
        free(acl->users[i].name);
        rules_free(&acl->users[i].deny);
        rules_free(&acl->users[i].allow);
    }
    free(acl->users);
    rules_free(&acl->anon.deny);
    rules_free(&acl->anon.allow);
    rules_free(&acl->pat_deny);
    rules_free(&acl->pat_allow);
    free(acl);
}

static int rules_add(rules_t *r, const char *filter, size_t flen, int access) {
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 4;
        rule_t *nv = realloc(r->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        r->v = nv;
        r->cap = ncap;
    }
    char *f = malloc(flen + 1);
    if (!f)
        return -1;
    memcpy(f, filter, flen);
    f[flen] = '\0';
    r->v[r->n++] = (rule_t){f, flen, access};
    return 0;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int user_cmp(const void *a, const void *b) {
    const acl_user_t *x = a, *y = b;
    return name_cmp(x->name, x->nlen, y->name, y->nlen);
}

static acl_user_t *user_find(const acl_t *acl, const char *name, size_t nlen) {
    size_t lo = 0, hi = acl->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(acl->users[mid].name, acl->users[mid].nlen, name, nlen);
        if (c == 0)
            return &acl->users[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* While loading, users are appended unsorted; a repeated `user NAME` section
 * continues the first one (as Mosquitto does), found by a linear search from
 * the end so the common case (a new name) stays cheap enough for a file. */
static acl_user_t *user_get(acl_t *acl, const char *name, size_t nlen) {
    for (size_t i = acl->nusers; i-- > 0;)
        if (name_cmp(acl->users[i].name, acl->users[i].nlen, name, nlen) == 0)
            return &acl->users[i];
    if (acl->nusers == acl->cap) {
        size_t ncap = acl->cap ? acl->cap * 2 : 8;
        acl_user_t *nu = realloc(acl->users, ncap * sizeof(*nu));
        if (!nu)
            return NULL;
        acl->users = nu;
        acl->cap = ncap;
    }
    char *n = malloc(nlen + 1);
    if (!n)
        return NULL;
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    acl_user_t *u = &acl->users[acl->nusers++];
    memset(u, 0, sizeof(*u));
    u->name = n;
    u->nlen = nlen;
    return u;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Next blank-separated token of [*p, end); advances *p past it. */
static bool next_token(const char **p, const char *end, const char **tok, size_t *tlen) {
    const char *s = *p;
    while (s < end && is_blank(*s))
        s++;
    const char *e = s;
    while (e < end && !is_blank(*e))
        e++;
    *tok = s;
    *tlen = (size_t)(e - s);
    *p = e;
    return e > s;
}

static bool tok_is(const char *t, size_t tlen, const char *word) {
    return tlen == strlen(word) && memcmp(t, word, tlen) == 0;
}

/* In a pattern, %u and %c must be a whole level: "a/%u/b", not "a/x%u". */
static bool pattern_levels_ok(const char *f, size_t flen) {
    size_t i = 0;
    while (i <= flen) {
        size_t e = i;
        while (e < flen && f[e] != '/')
            e++;
        size_t n = e - i;
        bool whole = n == 2 && f[i] == '%' && (f[i + 1] == 'u' || f[i + 1] == 'c');
        if (!whole)
            for (size_t j = i; j + 1 < e; j++)
                if (f[j] == '%' && (f[j + 1] == 'u' || f[j + 1] == 'c'))
                    return false;
        i = e + 1;
    }
    return true;
}

static int parse_line(acl_t *acl, acl_user_t **cur, const char *name, unsigned lineno,
                      const char *line, size_t len, char *errbuf, size_t errlen) {
    const char *end = line + len;
    while (end > line && is_blank(end[-1]))
        end--;
    const char *p = line, *kw;
    size_t kwlen;
    if (!next_token(&p, end, &kw, &kwlen) || kw[0] == '#')
        return 0;
    if (tok_is(kw, kwlen, "user")) {
        while (p < end && is_blank(*p))
            p++;
        size_t nlen = (size_t)(end - p);
        if (nlen == 0) {
            set_err(errbuf, errlen, "%s:%u: missing user name after 'user'", name, lineno);
            return -1;
        }
        if (nlen > 65535 || mqtt_utf8_check((const uint8_t *)p, nlen) != 0) {
            set_err(errbuf, errlen, "%s:%u: user name is not a valid MQTT string", name, lineno);
            return -1;
        }
        *cur = user_get(acl, p, nlen);
        if (!*cur)
            goto oom;
        return 0;
    }
    bool pattern = tok_is(kw, kwlen, "pattern");
    if (!pattern && !tok_is(kw, kwlen, "topic")) {
        set_err(errbuf, errlen, "%s:%u: unknown keyword '%.*s' (expected topic, pattern or user)",
                name, lineno, (int)(kwlen > 32 ? 32 : kwlen), kw);
        return -1;
    }
    const char *first;
    size_t flen;
    if (!next_token(&p, end, &first, &flen)) {
        set_err(errbuf, errlen, "%s:%u: missing topic filter after '%.*s'", name, lineno,
                (int)kwlen, kw);
        return -1;
    }
    while (p < end && is_blank(*p))
        p++;
    const char *filter = first;
    size_t filter_len = flen;
    int access = ACL_READ | ACL_WRITE;
    /* One word: the filter. More: an access word, then the rest of the line
     * (which may contain blanks) is the filter, exactly as Mosquitto reads it. */
    if (p < end) {
        filter = p;
        filter_len = (size_t)(end - p);
        if (tok_is(first, flen, "read"))
            access = ACL_READ;
        else if (tok_is(first, flen, "write"))
            access = ACL_WRITE;
        else if (tok_is(first, flen, "readwrite"))
            access = ACL_READ | ACL_WRITE;
        else if (tok_is(first, flen, "deny"))
            access = ACCESS_DENY;
        else {
            set_err(errbuf, errlen,
                    "%s:%u: unknown access '%.*s' (expected read, write, readwrite or deny)", name,
                    lineno, (int)(flen > 32 ? 32 : flen), first);
            return -1;
        }
    }
    if (mqtt_topic_filter_check((const uint8_t *)filter, filter_len) != 0) {
        set_err(errbuf, errlen, "%s:%u: invalid topic filter '%.*s'", name, lineno,
                (int)(filter_len > 64 ? 64 : filter_len), filter);
        return -1;
    }
    rules_t *r;
    if (pattern) {
        if (!pattern_levels_ok(filter, filter_len)) {
            set_err(errbuf, errlen, "%s:%u: %%u and %%c must fill a whole topic level in '%.*s'",
                    name, lineno, (int)(filter_len > 64 ? 64 : filter_len), filter);
            return -1;
        }
        r = access == ACCESS_DENY ? &acl->pat_deny : &acl->pat_allow;
    } else {
        acl_user_t *u = *cur ? *cur : &acl->anon;
        r = access == ACCESS_DENY ? &u->deny : &u->allow;
    }
    if (rules_add(r, filter, filter_len, access) != 0)
        goto oom;
    return 0;
oom:
    set_err(errbuf, errlen, "%s: out of memory", name);
    return -1;
}

acl_t *acl_load_string(const char *name, const char *buf, size_t len, char *errbuf, size_t errlen) {
    set_err(errbuf, errlen, "%s", "");
    acl_t *acl = calloc(1, sizeof(*acl));
    if (!acl) {
        set_err(errbuf, errlen, "%s: out of memory", name);
        return NULL;
    }
    /* The current `user` section; only user_get() reallocates the array, and
     * it returns the fresh pointer. */
    acl_user_t *cur = NULL;
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        pos += llen + (nl ? 1 : 0);
        lineno++;
        if (memchr(line, '\0', llen)) {
            set_err(errbuf, errlen, "%s:%u: NUL byte in the file", name, lineno);
            goto fail;
        }
        if (parse_line(acl, &cur, name, lineno, line, llen, errbuf, errlen) != 0)
            goto fail;
    }
    if (acl->nusers)
        qsort(acl->users, acl->nusers, sizeof(acl_user_t), user_cmp);
    return acl;
fail:
    acl_free(acl);
    return NULL;
}

acl_t *acl_load(const char *path, char *errbuf, size_t errlen) {
    char *buf;
    size_t len;
    /* Bounded so a wrong path (a device, a huge log) cannot exhaust memory. */
    if (file_read_all(path, 256u << 20, &buf, &len, errbuf, errlen) < 0)
        return NULL;
    acl_t *acl = acl_load_string(path, buf, len, errbuf, errlen);
    free(buf);
    return acl;
}

typedef struct {
    const char *s;
    size_t len;
    bool valid; /* usable in a %u / %c level */
} subst_t;

static bool match(const char *f, size_t flen, const char *t, size_t tlen, const subst_t *u,
                  const subst_t *c) {
    if (tlen == 0 || flen == 0)
        return false;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fi = 0, ti = 0;
    for (;;) {
        size_t fe = fi;
        while (fe < flen && f[fe] != '/')
            fe++;
        size_t te = ti;
        while (te < tlen && t[te] != '/')
            te++;
        const char *fl = f + fi;
        size_t fll = fe - fi, tll = te - ti;
        if (fll == 1 && fl[0] == '#')
            return true;
        bool ok;
        if (fll == 1 && fl[0] == '+')
            ok = true;
        else if (u && fll == 2 && fl[0] == '%' && fl[1] == 'u')
            ok = u->valid && tll == u->len && memcmp(t + ti, u->s, tll) == 0;
        else if (c && fll == 2 && fl[0] == '%' && fl[1] == 'c')
            ok = c->valid && tll == c->len && memcmp(t + ti, c->s, tll) == 0;
        else
            ok = fll == tll && memcmp(fl, t + ti, tll) == 0;
        if (!ok)
            return false;
        bool fend = fe >= flen, tend = te >= tlen;
        if (fend && tend)
            return true;
        if (tend) /* "a/#" also matches "a" */
            return flen - fe == 2 && f[fe + 1] == '#';
        if (fend)
            return false;
        fi = fe + 1;
        ti = te + 1;
    }
}

bool acl_filter_matches(const char *filter, size_t flen, const char *topic, size_t tlen) {
    return match(filter, flen, topic, tlen, NULL, NULL);
}

static int rules_decide(const rules_t *deny, const rules_t *allow, const char *topic, size_t tlen,
                        int access, const subst_t *su, const subst_t *sc) {
    for (size_t i = 0; i < deny->n; i++)
        if (match(deny->v[i].filter, deny->v[i].flen, topic, tlen, su, sc))
            return -1;
    for (size_t i = 0; i < allow->n; i++)
        if ((allow->v[i].access & access) &&
            match(allow->v[i].filter, allow->v[i].flen, topic, tlen, su, sc))
            return 1;
    return 0;
}

/* Names that could widen or shift a pattern's levels never take part. */
static bool subst_ok(const char *s, size_t len) {
    return len > 0 && !memchr(s, '+', len) && !memchr(s, '#', len) && !memchr(s, '/', len);
}

/* The %u and %c values of a client; false when it may match no pattern at
 * all (as in Mosquitto: not only the patterns that name %u or %c). */
static bool subst_init(const char *user, const char *client_id, subst_t *su, subst_t *sc) {
    *su = (subst_t){user, user ? strlen(user) : 0, false};
    *sc = (subst_t){client_id, client_id ? strlen(client_id) : 0, false};
    su->valid = user && subst_ok(su->s, su->len);
    sc->valid = client_id && subst_ok(sc->s, sc->len);
    return !((user && !su->valid) || !sc->valid);
}

bool acl_check(const acl_t *acl, const char *user, const char *client_id, const char *topic,
               size_t topic_len, int access) {
    if (topic_len == 0 || memchr(topic, '+', topic_len) || memchr(topic, '#', topic_len))
        return false;
    const acl_user_t *u = user ? user_find(acl, user, strlen(user)) : &acl->anon;
    if (u) {
        int d = rules_decide(&u->deny, &u->allow, topic, topic_len, access, NULL, NULL);
        if (d != 0)
            return d > 0;
    }
    subst_t su, sc;
    if ((acl->pat_deny.n == 0 && acl->pat_allow.n == 0) || !subst_init(user, client_id, &su, &sc))
        return false;
    return rules_decide(&acl->pat_deny, &acl->pat_allow, topic, topic_len, access, &su, &sc) > 0;
}

/* One level of a rule as it applies to this client: %u / %c replaced. */
static bool level_subst(const char **l, size_t *n, const subst_t *u, const subst_t *c) {
    if (*n == 2 && (*l)[0] == '%' && ((*l)[1] == 'u' || (*l)[1] == 'c')) {
        const subst_t *x = (*l)[1] == 'u' ? u : c;
        if (!x || !x->valid)
            return false;
        *l = x->s;
        *n = x->len;
    }
    return true;
}

/* Whether some topic name matches both the rule's filter r and the
 * subscription's filter f: level by level, '+' meets any level, '#' the rest,
 * "a/#" also meets "a"; a wildcard first level meets no '$' level. */
static bool filters_meet(const char *r, size_t rlen, const char *f, size_t flen, const subst_t *u,
                         const subst_t *c) {
    size_t ri = 0, fi = 0;
    for (bool first = true;; first = false) {
        size_t re = ri, fe = fi;
        while (re < rlen && r[re] != '/')
            re++;
        while (fe < flen && f[fe] != '/')
            fe++;
        const char *rl = r + ri, *fl = f + fi;
        size_t rn = re - ri, fn = fe - fi;
        if (!level_subst(&rl, &rn, u, c))
            return false;
        bool rw = rn == 1 && (rl[0] == '+' || rl[0] == '#');
        bool fw = fn == 1 && (fl[0] == '+' || fl[0] == '#');
        if (first && ((rw && fn && fl[0] == '$') || (fw && rn && rl[0] == '$')))
            return false;
        if ((rn == 1 && rl[0] == '#') || (fn == 1 && fl[0] == '#'))
            return true;
        if (!rw && !fw && (rn != fn || memcmp(rl, fl, rn) != 0))
            return false;
        bool rend = re >= rlen, fend = fe >= flen;
        if (rend && fend)
            return true;
        if (rend)
            return flen - fe == 2 && f[fe + 1] == '#';
        if (fend)
            return rlen - re == 2 && r[re + 1] == '#';
        ri = re + 1;
        fi = fe + 1;
    }
}

static bool rules_meet(const rules_t *allow, const char *f, size_t flen, const subst_t *u,
                       const subst_t *c) {
    for (size_t i = 0; i < allow->n; i++)
        if ((allow->v[i].access & ACL_READ) &&
            filters_meet(allow->v[i].filter, allow->v[i].flen, f, flen, u, c))
            return true;
    return false;
}

bool acl_can_subscribe(const acl_t *acl, const char *user, const char *client_id,
                       const char *filter, size_t filter_len) {
    if (filter_len == 0)
        return false;
    const acl_user_t *uu = user ? user_find(acl, user, strlen(user)) : &acl->anon;
    if (uu && rules_meet(&uu->allow, filter, filter_len, NULL, NULL))
        return true;
    subst_t su, sc;
    return subst_init(user, client_id, &su, &sc) &&
           rules_meet(&acl->pat_allow, filter, filter_len, &su, &sc);
}

bool acl_can_publish(const acl_t *acl, const char *user, const char *client_id, const char *topic,
                     size_t topic_len) {
    return acl_check(acl, user, client_id, topic, topic_len, ACL_WRITE);
}
