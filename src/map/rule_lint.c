/* Lint of the topic map's rules (see rule_lint.h): exact, cheap checks only,
 * so that a warning is always true. */
#include "map/rule_lint.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* '+' and '#' in the first level do not match topics beginning with '$'
 * (MQTT 4.7.2); topic_map.c's trie walk does the same. */
int topic_map_filter_covers(const char *f, const char *g) {
    if ((f[0] == '+' || f[0] == '#') && g[0] == '$')
        return 0;
    const char *g0 = g;
    for (int k = 0;; k++) {
        size_t la = strcspn(f, "/"), lb = strcspn(g, "/");
        if (la == 1 && f[0] == '#')
            return 1;
        /* g matches its parent (k levels) and every deeper topic: "+/#"
         * matches the deeper ones; the parent is no topic when it has no
         * level or is the empty topic ("#", "/#"). */
        if (lb == 1 && g[0] == '#')
            return la == 1 && f[0] == '+' && strcmp(f + 1, "/#") == 0 &&
                   (k == 0 || (k == 1 && g0[0] == '/'));
        if (!(la == 1 && f[0] == '+') && (la != lb || memcmp(f, g, la) != 0))
            return 0;
        bool end_f = f[la] == '\0', end_g = g[lb] == '\0';
        if (end_f && end_g)
            return 1;
        if (end_f)
            return 0;
        if (end_g) /* "a/#" matches "a" */
            return strcmp(f + la + 1, "#") == 0;
        f += la + 1;
        g += lb + 1;
    }
}

/* The end of the bracket expression that starts at re[i] == '[' (the index
 * after its ']'), 0 when it does not close (regcomp refused it already). */
static size_t bracket_end(const char *re, size_t i) {
    size_t j = i + 1;
    if (re[j] == '^')
        j++;
    if (re[j] == ']')
        j++; /* a leading ] is literal */
    for (; re[j] && re[j] != ']'; j++) {
        if (re[j] == '[' && (re[j + 1] == ':' || re[j + 1] == '.' || re[j + 1] == '=')) {
            const char *end = strchr(re + j + 2, re[j + 1]);
            while (end && end[1] != ']')
                end = strchr(end + 1, re[j + 1]);
            if (!end)
                return 0;
            j = (size_t)(end - re) + 1;
        }
    }
    return re[j] ? j + 1 : 0;
}

/* A backslash before these is a literal character in POSIX ERE; GNU gives
 * \` \' \< \> \b \B \w ... (and \1 back references) other meanings. */
static bool escaped_literal(char c) {
    return ispunct((unsigned char)c) && c != '`' && c != '\'' && c != '<' && c != '>';
}

static bool quantifier(char c) {
    return c == '*' || c == '?' || c == '{';
}

/* The atom at re[i]: its end (index after it) when it always consumes exactly
 * one character, else 0 (a group, an anchor, a back reference ...). *lit is
 * the literal character it matches, 0 for '.' or a bracket. */
static size_t one_char_atom(const char *re, size_t i, char *lit) {
    *lit = 0;
    char c = re[i];
    if (c == '\\')
        return re[i + 1] && escaped_literal(re[i + 1]) ? (*lit = re[i + 1], i + 2) : 0;
    if (c == '[')
        return bracket_end(re, i);
    if (c == '.')
        return i + 1;
    if (c == '\0' || strchr("()|^$*+?{", c))
        return 0;
    *lit = c;
    return i + 1;
}

/* Why the POSIX ERE `re` (valid) can never match a topic, or NULL: only for
 * a regex without alternatives, from what its top level requires. */
static const char *regex_dead(const char *re, char *why, size_t whylen) {
    size_t n = strlen(re);
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '\\' && re[i + 1])
            i++;
        else if (re[i] == '[') {
            size_t e = bracket_end(re, i);
            if (!e)
                return NULL;
            i = e - 1;
        } else if (re[i] == '|')
            return NULL;
    }
    int depth = 0;
    for (size_t i = 0; i < n;) {
        char c = re[i], lit;
        if (c == '(' || c == ')') {
            depth += c == '(' ? 1 : -1;
            i++;
            continue;
        }
        if (c == '$' && depth == 0) {
            size_t e = one_char_atom(re, i + 1, &lit);
            if (e && !quantifier(re[e])) {
                snprintf(why, whylen, "'$' (the end of the topic) is followed by more to match");
                return why;
            }
            i++;
            continue;
        }
        size_t e = one_char_atom(re, i, &lit);
        if (!e) {
            i += c == '\\' && re[i + 1] ? 2 : 1;
            continue;
        }
        if (depth == 0 && (lit == '+' || lit == '#') && !quantifier(re[e])) {
            snprintf(why, whylen, "it requires a '%c', which a PUBLISH topic cannot contain", lit);
            return why;
        }
        i = e;
    }
    return NULL;
}

/* Whether the regex can only match topics that do not begin with '$': it
 * starts with '^' and a required literal other than '$', without '|'. */
static bool regex_not_dollar(const char *re) {
    char lit;
    if (re[0] != '^' || strchr(re, '|'))
        return false;
    size_t e = one_char_atom(re, 1, &lit);
    return e && lit && lit != '$' && !quantifier(re[e]);
}

size_t topic_map_lint(const config_rule_t *rules, size_t n, topic_map_report_fn report, void *ud) {
    size_t count = 0;
    char msg[1024], why[128];
    long catch_all = -1; /* the first filter rule "#" */
    for (size_t j = 0; j < n; j++) {
        const config_rule_t *g = &rules[j];
        if (g->kind == RULE_REGEX) {
            if (regex_dead(g->pattern, why, sizeof(why))) {
                snprintf(msg, sizeof(msg), "topics[%zu].regex: \"%.200s\" can never match: %s", j,
                         g->pattern, why);
                report(ud, g->pattern_pos, msg);
                count++;
            } else if (catch_all >= 0) {
                const config_rule_t *f = &rules[catch_all];
                if (regex_not_dollar(g->pattern))
                    snprintf(msg, sizeof(msg),
                             "topics[%zu].regex: \"%.200s\" never applies: topics[%ld] \"#\" "
                             "(line %d) comes first and matches every topic it matches",
                             j, g->pattern, catch_all, f->pattern_pos.line);
                else
                    snprintf(msg, sizeof(msg),
                             "topics[%zu].regex: \"%.200s\" applies only to topics beginning "
                             "with '$': topics[%ld] \"#\" (line %d) comes first and matches every "
                             "other topic",
                             j, g->pattern, catch_all, f->pattern_pos.line);
                report(ud, g->pattern_pos, msg);
                count++;
            }
            continue;
        }
        for (size_t i = 0; i < j; i++) {
            const config_rule_t *f = &rules[i];
            if (f->kind != RULE_FILTER || !topic_map_filter_covers(f->pattern, g->pattern))
                continue;
            snprintf(msg, sizeof(msg),
                     "topics[%zu].mqtt: \"%.200s\" never applies: topics[%zu] \"%.200s\" (line %d) "
                     "comes first and matches every topic it matches",
                     j, g->pattern, i, f->pattern, f->pattern_pos.line);
            report(ud, g->pattern_pos, msg);
            count++;
            break;
        }
        if (catch_all < 0 && strcmp(g->pattern, "#") == 0)
            catch_all = (long)j;
    }
    return count;
}
