/* Lint of the topic map's rules (warnings of --check, the start and a
 * reload; they never refuse a configuration): rules an earlier rule shadows
 * and regexes that can never match a PUBLISH topic. The rules are the
 * loader's, already valid (topic_map_rule_check). */
#ifndef M2K_MAP_RULE_LINT_H
#define M2K_MAP_RULE_LINT_H

#include <stddef.h>

#include "map/topic_map.h"

/* Calls `report` once per warning, in rule order, with the position of the
 * rule's mqtt: or regex: value and a message without position (no
 * "warning: " in front). Returns how many. Detected: a filter every topic of
 * which an earlier filter matches; a regex after the filter "#" (shadowed
 * when it can only match topics not beginning with '$', else named as
 * reached by '$' topics only); a regex without '|' whose top level needs a
 * character after '$' or a '+' or '#' (which a PUBLISH topic cannot hold).
 * Not detected: a regex shadowed by a regex, a filter by a regex, a regex by
 * a filter other than "#". */
size_t topic_map_lint(const config_rule_t *rules, size_t n, topic_map_report_fn report, void *ud);

/* Whether every topic the filter `g` matches is matched by the filter `f`
 * (both valid filters). */
int topic_map_filter_covers(const char *f, const char *g);

#endif
