/* Java regex (as Confluent MQTT Proxy's topic.regex.list uses it) -> POSIX
 * extended regex, for the importer (confluent_import.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/confluent_import.h"
#include "strbuf.h"

static void note(sb_t *notes, const char *fmt, const char *what) {
    char buf[256];
    snprintf(buf, sizeof(buf), fmt, what);
    sb_puts(notes, buf);
    sb_putc(notes, '\n');
}

/* Java's class escapes (\d \D \w \W \s \S) as POSIX bracket contents. */
typedef struct {
    char escape;
    bool negated;
    const char *posix;
} java_class_t;

static const java_class_t java_classes[] = {
    {'d', false, "0-9"},       {'D', true, "0-9"},        {'w', false, "[:alnum:]_"},
    {'W', true, "[:alnum:]_"}, {'s', false, "[:space:]"}, {'S', true, "[:space:]"},
};

static const java_class_t *java_class(char e) {
    for (size_t i = 0; i < sizeof(java_classes) / sizeof(java_classes[0]); i++)
        if (java_classes[i].escape == e)
            return &java_classes[i];
    return NULL;
}

/* "\d rewritten as [0-9]" */
static void rewritten(sb_t *notes, char escape, const char *as, const char *where) {
    char msg[96];
    snprintf(msg, sizeof(msg), "\\%c rewritten as %s%s", escape, as, where);
    note(notes, "%s", msg);
}

int confluent_regex_to_posix(const char *java, char **out, char **notes_out) {
    sb_t re = {0}, notes = {0};
    sb_putn(&re, "", 0);
    sb_putn(&notes, "", 0);
    bool in_bracket = false, fatal = false;
    size_t bracket_start = 0;
    size_t n = strlen(java);
    for (size_t i = 0; i < n && !fatal; i++) {
        char c = java[i];
        if (in_bracket) {
            if (c == ']' && i > bracket_start) {
                in_bracket = false;
                sb_putc(&re, c);
            } else if (c == '[') {
                note(&notes, "%s: a class inside a class (union) has no POSIX equivalent", "[[");
                fatal = true;
            } else if (c == '&' && i + 1 < n && java[i + 1] == '&') {
                note(&notes, "%s: class intersection has no POSIX equivalent", "&&");
                fatal = true;
            } else if (c == '\\' && i + 1 < n) {
                char e = java[++i];
                const java_class_t *k = java_class(e);
                if (k && !k->negated) {
                    /* Inside brackets the class goes in without its own. */
                    sb_puts(&re, k->posix);
                    rewritten(&notes, e, k->posix, " inside [...]");
                } else if (strchr(".$|()*+?{}/_ ", e) || e == '\\') {
                    /* POSIX brackets take these literally without a backslash. */
                    sb_putc(&re, e);
                } else {
                    char what[4] = {'\\', e, 0, 0};
                    note(&notes, "%s inside [...] has no POSIX equivalent", what);
                    fatal = true;
                }
            } else {
                sb_putc(&re, c);
            }
            continue;
        }
        switch (c) {
        case '[':
            in_bracket = true;
            sb_putc(&re, c);
            bracket_start = i + 1;
            if (i + 1 < n && java[i + 1] == '^') {
                sb_putc(&re, '^');
                i++;
                bracket_start = i + 1;
            }
            break;
        case '\\': {
            if (i + 1 >= n) {
                note(&notes, "%s: trailing backslash", "\\");
                fatal = true;
                break;
            }
            char e = java[++i];
            char what[4] = {'\\', e, 0, 0};
            const java_class_t *k = java_class(e);
            if (k) {
                char bracket[32];
                snprintf(bracket, sizeof(bracket), "[%s%s]", k->negated ? "^" : "", k->posix);
                sb_puts(&re, bracket);
                rewritten(&notes, e, bracket, "");
            } else if (e == 'Q') {
                const char *end = strstr(java + i + 1, "\\E");
                size_t qlen = end ? (size_t)(end - (java + i + 1)) : n - i - 1;
                for (size_t q = 0; q < qlen; q++) {
                    char lc = java[i + 1 + q];
                    if (strchr(".[]()*+?{}|^$\\", lc))
                        sb_putc(&re, '\\');
                    sb_putc(&re, lc);
                }
                i += qlen + (end ? 2 : 0);
                note(&notes, "%s...\\E quoting rewritten with backslashes", "\\Q");
            } else if (strchr(".[]()*+?{}|^$\\/-", e)) {
                sb_putc(&re, '\\');
                sb_putc(&re, e);
            } else {
                note(&notes,
                     "%s has no POSIX ERE equivalent (word boundaries, \\A \\z, Unicode "
                     "classes, back-references and character escapes are Java-only)",
                     what);
                fatal = true;
            }
            break;
        }
        case '(':
            if (i + 1 < n && java[i + 1] == '?') {
                if (i + 2 < n && java[i + 2] == ':') {
                    sb_putc(&re, '(');
                    i += 2;
                    note(&notes, "%s non-capturing group rewritten as a plain group", "(?:");
                } else if (i + 3 < n && java[i + 2] == '<' && java[i + 3] != '=' &&
                           java[i + 3] != '!') {
                    const char *gt = strchr(java + i, '>');
                    if (!gt) {
                        note(&notes, "%s: unterminated group name", "(?<");
                        fatal = true;
                        break;
                    }
                    sb_putc(&re, '(');
                    i = (size_t)(gt - java);
                    note(&notes, "%s named group rewritten as a plain group", "(?<name>");
                } else {
                    note(&notes,
                         "%s: lookarounds, inline flags and atomic groups have no POSIX ERE "
                         "equivalent",
                         "(?");
                    fatal = true;
                }
            } else {
                sb_putc(&re, '(');
            }
            break;
        case '*':
        case '+':
        case '?':
        case '}':
            sb_putc(&re, c);
            if (i + 1 < n && java[i + 1] == '?') {
                /* The whole topic must match, so lazy and greedy accept the same topics. */
                char what[3] = {c, '?', 0};
                note(&notes, "lazy quantifier %s rewritten as greedy (same topics match)", what);
                i++;
            } else if (i + 1 < n && java[i + 1] == '+') {
                char what[3] = {c, '+', 0};
                note(&notes, "possessive quantifier %s has no POSIX ERE equivalent", what);
                fatal = true;
            }
            break;
        default:
            sb_putc(&re, c);
        }
    }
    if (in_bracket && !fatal) {
        note(&notes, "%s: unterminated character class", "[");
        fatal = true;
    }
    if (!fatal) {
        /* Confluent matches the whole topic (Matcher.matches()); POSIX regexec
         * searches, so anchor both ends. */
        sb_t a = {0};
        bool alt = strchr(re.p, '|') != NULL;
        size_t rl = re.len;
        bool has_caret = !alt && rl > 0 && re.p[0] == '^';
        bool has_dollar = !alt && rl > 0 && re.p[rl - 1] == '$' && (rl < 2 || re.p[rl - 2] != '\\');
        sb_puts(&a, alt ? "^(" : (has_caret ? "" : "^"));
        sb_puts(&a, re.p);
        sb_puts(&a, alt ? ")$" : (has_dollar ? "" : "$"));
        free(re.p);
        re = a;
    }
    if (re.oom || notes.oom) {
        free(re.p);
        free(notes.p);
        *out = NULL;
        *notes_out = NULL;
        return -1;
    }
    if (fatal) {
        free(re.p);
        *out = NULL;
        *notes_out = notes.p;
        return -1;
    }
    *out = re.p;
    *notes_out = notes.p;
    return 0;
}
