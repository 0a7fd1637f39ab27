/* Lint of topic rules: Perl habits in POSIX extended regexes (regex rules of
 * the topic map refuse them), and --check's warnings (topic_map_rule_lint). */
#include "regex_lint.h"

#include "map/topic_map.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* POSIX ERE gives a backslash meaning only before a special character; glibc
 * reads \d as a plain d (and \w \s \b as GNU extensions other libcs lack),
 * and inside [...] a backslash is an ordinary character. A backslash before a
 * letter is therefore a Perl habit that would silently match something else:
 * returns the first such escape's letter (0 if none) and in *inside whether it
 * stood in a bracket expression. */
char regex_perl_escape(const char *re, bool *inside) {
    for (const char *p = re; *p; p++) {
        if (*p == '\\') {
            if (!p[1])
                return 0;
            if (isalpha((unsigned char)p[1])) {
                *inside = false;
                return p[1];
            }
            p++; /* \\, \. ...: an escaped special character */
        } else if (*p == '[') {
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++; /* a leading ] is literal */
            for (; *q && *q != ']'; q++) {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *end = strchr(q + 2, q[1]);
                    while (end && end[1] != ']')
                        end = strchr(end + 1, q[1]);
                    if (!end)
                        return 0; /* regcomp reports it */
                    q = end + 1;
                } else if (*q == '\\' && isalpha((unsigned char)q[1])) {
                    *inside = true;
                    return q[1];
                }
            }
            if (!*q)
                return 0;
            p = q;
        }
    }
    return 0;
}

/* The POSIX form of a Perl escape (`inside` a bracket expression or not). */
const char *regex_posix_form(char e, bool inside) {
    switch (e) {
    case 'd':
        return inside ? "0-9 (as in [0-9])" : "[0-9]";
    case 'D':
        return inside ? "a negated bracket [^0-9]" : "[^0-9]";
    case 'w':
        return inside ? "[:alnum:]_ (as in [[:alnum:]_])" : "[[:alnum:]_]";
    case 'W':
        return inside ? "a negated bracket [^[:alnum:]_]" : "[^[:alnum:]_]";
    case 's':
        return inside ? "[:space:] (as in [[:space:]])" : "[[:space:]]";
    case 'S':
        return inside ? "a negated bracket [^[:space:]]" : "[^[:space:]]";
    case 'b':
    case 'B':
    case 'A':
    case 'z':
    case 'Z':
        return "^, $ or the level separator (as in (^|/)name(/|$)): POSIX has no word "
               "boundaries or \\A \\z";
    default:
        return "the letter itself, without the backslash, or a bracket expression";
    }
}

/* ---- what a regex group can match ---- */

/* A bracket expression at p ('['): whether every byte it matches is legal in
 * a Kafka name; *end is set past its ']'. */
static bool bracket_safe(const char *p, const char **end) {
    const char *q = p + 1;
    bool safe = *q != '^'; /* a negated bracket matches nearly anything */
    if (*q == '^')
        q++;
    if (*q == ']') {
        safe = false; /* ']' itself */
        q++;
    }
    for (; *q && *q != ']'; q++) {
        if (*q == '[' && q[1] == ':') {
            static const char *const ok[] = {"[:alnum:]", "[:alpha:]", "[:digit:]",
                                             "[:lower:]", "[:upper:]", "[:xdigit:]"};
            bool known = false;
            for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                if (strncmp(q, ok[i], strlen(ok[i])) == 0) {
                    known = true;
                    q += strlen(ok[i]) - 1;
                }
            if (!known) {
                safe = false;
                const char *e = strstr(q + 2, ":]");
                q = e ? e + 1 : q + 1;
            }
        } else if (q[1] == '-' && q[2] && q[2] != ']') {
            /* a range: both ends in the same run of letters or digits */
            unsigned char a = (unsigned char)q[0], b = (unsigned char)q[2];
            safe = safe && ((isdigit(a) && isdigit(b)) || (islower(a) && islower(b)) ||
                            (isupper(a) && isupper(b)));
            q += 2;
        } else if (!map_kafka_char_ok((unsigned char)*q)) {
            safe = false;
        }
    }
    *end = *q ? q + 1 : q;
    return safe;
}

/* Whether p starts an escape or a bracket expression, whose structure
 * characters are literal; *last is then its last byte. */
static bool atom(const char *p, const char **last) {
    const char *e;
    if (*p == '\\' && p[1]) {
        *last = p + 1;
    } else if (*p == '[') {
        bracket_safe(p, &e);
        *last = e - 1;
    } else {
        return false;
    }
    return true;
}

bool regex_group_kafka_safe(const char *re, int group) {
    int n = 0, depth = 0;
    const char *p = re;
    for (; *p; p++) { /* find the group's '(' */
        if (atom(p, &p))
            continue;
        if (*p == '(' && ++n == group) {
            break;
        }
    }
    if (!*p)
        return false;
    for (p++; *p; p++) {
        switch (*p) {
        case '\\':
            if (!p[1] || !map_kafka_char_ok((unsigned char)p[1]))
                return false;
            p++;
            break;
        case '[': {
            const char *e;
            if (!bracket_safe(p, &e))
                return false;
            p = e - 1;
            break;
        }
        case '(':
            depth++;
            break;
        case ')':
            if (depth-- == 0)
                return true;
            break;
        case '{': {
            const char *e = strchr(p, '}');
            if (!e)
                return false;
            p = e;
            break;
        }
        case '*':
        case '+':
        case '?':
        case '|':
        case '^':
        case '$':
            break;
        default: /* '.' (any byte) included */
            if (*p == '.' || !map_kafka_char_ok((unsigned char)*p))
                return false;
        }
    }
    return false;
}

/* ---- --check's warnings ---- */

/* Each top-level branch of the pattern starts with '^'. */
static bool regex_anchored(const char *re) {
    if (re[0] != '^')
        return false;
    int depth = 0;
    for (const char *p = re; *p; p++) {
        if (atom(p, &p))
            continue;
        if (*p == '(') {
            depth++;
        } else if (*p == ')') {
            depth--;
        } else if (*p == '|' && depth == 0 && p[1] != '^') {
            return false;
        }
    }
    return true;
}

/* The n-th (1-based) wildcard of a filter: '+' or '#'. */
static char filter_wildcard(const char *f, int n) {
    for (const char *p = f; *p; p++)
        if ((*p == '+' || *p == '#') && --n == 0)
            return *p;
    return 0;
}

#define LINT_TAIL                                                                                  \
    ": a message whose rendered Kafka topic is illegal is refused, never acknowledged "            \
    "(allowed: a-z A-Z 0-9 . _ -, 1..249 characters)"

int topic_map_rule_lint(const config_rule_t *r, size_t index, topic_map_report_fn report,
                        void *ud) {
    char msg[768];
    int n = 0;
    bool regex = r->kind == RULE_REGEX;
    if (regex && !regex_anchored(r->pattern)) {
        snprintf(msg, sizeof(msg),
                 "topics[%zu].regex: \"%.200s\" is not anchored with '^': it is tried from "
                 "every position of the topic, in time up to quadratic in the topic's length on "
                 "the event loop (topics over mqtt.max_regex_topic_length skip regex rules)",
                 index, r->pattern);
        report(ud, r->pattern_pos, msg);
        n++;
    }
    /* Placeholders of the Kafka topic template (valid: topic_map_rule_check). */
    for (const char *p = r->kafka; *p; p++) {
        if (p[0] == '{' && p[1] == '{') {
            p++;
            continue;
        }
        if (*p != '{')
            continue;
        const char *close = strchr(p, '}');
        if (!close)
            break;
        size_t len = (size_t)(close - p - 1);
        const char *name = p + 1;
        p = close;
        const char *what = NULL;
        char buf[300];
        if (len == 1 && isdigit((unsigned char)name[0])) {
            int g = name[0] - '0';
            if (regex) {
                if (!regex_group_kafka_safe(r->pattern, g)) {
                    snprintf(buf, sizeof(buf),
                             "{%d} is regex group %d, which may match a byte a Kafka topic name "
                             "cannot hold (write the group with [a-zA-Z0-9._-])",
                             g, g);
                    what = buf;
                }
            } else if (filter_wildcard(r->pattern, g) == '#') {
                snprintf(buf, sizeof(buf), "{%d} is what '#' matches, which may hold '/'", g);
                what = buf;
            } else {
                snprintf(buf, sizeof(buf),
                         "{%d} is a whole topic level ('+'), which may hold any character but "
                         "'/' (a regex rule with a [a-zA-Z0-9._-] group bounds it)",
                         g);
                what = buf;
            }
        } else if (len == 5 && memcmp(name, "topic", 5) == 0) {
            if (regex || strpbrk(r->pattern, "/+#"))
                what = "{topic} is the MQTT topic, whose '/' a Kafka topic name cannot hold";
        } else if (len == 9 && memcmp(name, "client_id", 9) == 0) {
            what = "{client_id} is chosen by the client and may hold any character";
        } else if (len == 8 && memcmp(name, "username", 8) == 0) {
            what = "{username} may hold any character";
        } else if (len > 9 && memcmp(name, "property:", 9) == 0) {
            what = "{property:NAME} is chosen by the client and may hold any character";
        }
        if (what) {
            snprintf(msg, sizeof(msg), "topics[%zu].kafka: %s" LINT_TAIL, index, what);
            report(ud, r->kafka_pos, msg);
            n++;
        }
    }
    return n;
}
