/* Perl habits in POSIX extended regexes (regex rules of the topic map). */
#include "regex_lint.h"

#include <ctype.h>
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
