/* Lint of topic rules: Perl habits in POSIX extended regexes (refused by
 * topic_map.c), and the warnings of topic_map_rule_lint. */
#ifndef M2K_MAP_REGEX_LINT_H
#define M2K_MAP_REGEX_LINT_H

#include <stdbool.h>

/* The letter of the first backslash-letter escape in `re` (\d, \w, \b ...),
 * 0 if none; *inside says whether it stood in a bracket expression. */
char regex_perl_escape(const char *re, bool *inside);
/* The POSIX form to write instead of the escape `e`. */
const char *regex_posix_form(char e, bool inside);

/* Whether regex group `group` (1..9, numbered by its '(') of a valid
 * extended regex can only match bytes a Kafka topic name may hold. */
bool regex_group_kafka_safe(const char *re, int group);

/* a-z A-Z 0-9 . _ - (topic_map.c) */
bool map_kafka_char_ok(unsigned char c);

#endif
