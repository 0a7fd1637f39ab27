/* What is done with the settings table (settings.c): lookups, the defaults of
 * a section, and the reload's "needs a restart" comparison. */
#include "settings.h"

#include <stdio.h>
#include <string.h>

const setting_t *settings_find(const char *path) {
    for (size_t i = 0; i < config_settings_count; i++)
        if (strcmp(config_settings[i].path, path) == 0)
            return &config_settings[i];
    return NULL;
}

/* The part of `path` below section `sec`, or NULL when it is not below it. */
static const char *below(const char *path, const char *sec) {
    size_t n = strlen(sec);
    if (n == 0)
        return path;
    return strncmp(path, sec, n) == 0 && path[n] == '.' ? path + n + 1 : NULL;
}

bool settings_is_child(const setting_t *s, const char *sec, const char **name) {
    const char *rest = below(s->path, sec);
    if (!rest || strchr(rest, '.'))
        return false;
    *name = rest;
    return true;
}

void settings_defaults(const char *sec, void *base) {
    for (size_t i = 0; i < config_settings_count; i++) {
        const setting_t *s = &config_settings[i];
        const char *rest = below(s->path, sec);
        if (!rest || strstr(rest, "[]") || !s->field || (s->flags & SETTING_DERIVED))
            continue;
        char *f = (char *)base + s->off;
        if (s->type == SET_UINT)
            *(uint32_t *)f = s->def;
        else if (s->type == SET_BOOL)
            *(bool *)f = s->def != 0;
        else if (s->type == SET_ENUM)
            *(int *)f = (int)s->def;
    }
}

/* ---- the reload's comparison ---- */

static bool str_differs(const char *a, const char *b) {
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

static bool differs(const setting_t *s, const void *a, const void *b);

/* The rows of one list item that need a restart, compared item by item. */
static bool list_differs(const setting_t *s, const void *a, const void *b) {
    size_t n = *(const size_t *)((const char *)a + s->count_off);
    if (n != *(const size_t *)((const char *)b + s->count_off))
        return true;
    const char *ia = *(const char *const *)((const char *)a + s->off);
    const char *ib = *(const char *const *)((const char *)b + s->off);
    char item[64];
    snprintf(item, sizeof(item), "%s[]", s->path);
    for (size_t k = 0; k < n; k++, ia += s->item_size, ib += s->item_size) {
        for (size_t i = 0; i < config_settings_count; i++) {
            const setting_t *r = &config_settings[i];
            const char *rest = below(r->path, item);
            if (rest && !strstr(rest, "[]") && (r->flags & SETTING_RESTART) && differs(r, ia, ib))
                return true;
        }
    }
    return false;
}

static bool differs(const setting_t *s, const void *a, const void *b) {
    const char *fa = (const char *)a + s->off, *fb = (const char *)b + s->off;
    switch (s->type) {
    case SET_SECTION:
    case SET_BOOL:
        return s->field && *(const bool *)fa != *(const bool *)fb;
    case SET_UINT:
        return *(const uint32_t *)fa != *(const uint32_t *)fb;
    case SET_ENUM:
        return *(const int *)fa != *(const int *)fb;
    case SET_STRING:
    case SET_FILE:
    case SET_LISTEN:
        return str_differs(*(char *const *)fa, *(char *const *)fb);
    case SET_LIST:
        return list_differs(s, a, b);
    case SET_MAP: {
        size_t n = *(const size_t *)((const char *)a + s->count_off);
        if (n != *(const size_t *)((const char *)b + s->count_off))
            return true;
        const config_property_t *pa = *(config_property_t *const *)fa;
        const config_property_t *pb = *(config_property_t *const *)fb;
        for (size_t i = 0; i < n; i++)
            if (strcmp(pa[i].name, pb[i].name) != 0 || strcmp(pa[i].value, pb[i].value) != 0)
                return true;
        return false;
    }
    case SET_STRINGS: {
        size_t n = *(const size_t *)((const char *)a + s->count_off);
        if (n != *(const size_t *)((const char *)b + s->count_off))
            return true;
        char *const *sa = *(char **const *)fa, *const *sb = *(char **const *)fb;
        for (size_t i = 0; i < n; i++)
            if (strcmp(sa[i], sb[i]) != 0)
                return true;
        return false;
    }
    case SET_CUSTOM:
    case SET_ALIAS:
        break;
    }
    return false;
}

size_t config_restart_changes(const config_t *running, const config_t *next,
                              void (*report)(void *ud, const char *msg), void *ud) {
    size_t changed = 0;
    for (size_t i = 0; i < config_settings_count; i++) {
        const setting_t *s = &config_settings[i];
        /* A row of a list item is compared as part of its list. */
        if (!(s->flags & SETTING_RESTART) || strstr(s->path, "[]") || !differs(s, running, next))
            continue;
        /* The note names the running value where it has "%s". */
        char note[256];
        const char *pct = strstr(s->restart_note, "%s");
        if (pct) {
            const char *old = *(char *const *)((const char *)running + s->off);
            snprintf(note, sizeof(note), "%.*s%s%s", (int)(pct - s->restart_note), s->restart_note,
                     old ? old : "off", pct + 2);
        } else {
            snprintf(note, sizeof(note), "%s", s->restart_note);
        }
        char msg[512];
        snprintf(msg, sizeof(msg), "%s changed; this needs a restart (%s)", s->path, note);
        report(ud, msg);
        changed++;
    }
    return changed;
}

/* docs/configuration.md's table: settings_doc.c */
