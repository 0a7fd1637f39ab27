/* Perl habits in POSIX extended regexes, refused in regex rules (topic_map.c). */
#ifndef M2K_MAP_REGEX_LINT_H
#define M2K_MAP_REGEX_LINT_H

#include <stdbool.h>

/* The letter of the first backslash-letter escape in `re` (\d, \w, \b ...),
 * 0 if none; *inside says whether it stood in a bracket expression. */
char regex_perl_escape(const char *re, bool *inside);
/* The POSIX form to write instead of the escape `e`. */
const char *regex_posix_form(char e, bool inside);

#endif
