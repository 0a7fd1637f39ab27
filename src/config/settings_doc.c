/* docs/configuration.md's settings table (`mqtt2kafka --settings-markdown`),
 * generated from the settings table (settings.c); unit.settings_doc and
 * scripts/gen-yaml-man.py check that the doc and the man page follow it. */
#include <stdio.h>

#include "config/config.h"
#include "settings.h"

static void put_words(FILE *out, const setting_t *s, const char *sep) {
    for (const setting_word_t *w = s->words; w->word; w++)
        fprintf(out, "%s`%s%s%s`", w == s->words ? "" : sep, s->flags & SETTING_QUOTED ? "\"" : "",
                w->word, s->flags & SETTING_QUOTED ? "\"" : "");
}

static void put_default(FILE *out, const setting_t *s) {
    if (s->doc_default) {
        fputs(s->doc_default, out);
        return;
    }
    switch (s->type) {
    case SET_UINT:
        fprintf(out, "%u", (unsigned)s->def);
        return;
    case SET_BOOL:
        fputs(s->def ? "`true`" : "`false`", out);
        return;
    case SET_ENUM:
        for (const setting_word_t *w = s->words; w->word; w++)
            if (w->value == (int)s->def)
                fprintf(out, s->flags & SETTING_QUOTED ? "`\"%s\"`" : "`%s`", w->word);
        return;
    case SET_MAP:
        for (const char *const *d = s->defaults; d[0]; d += 2)
            fprintf(out, "%s`%s: %s`", d == s->defaults ? "" : ", ", d[0], d[1]);
        return;
    default:
        fputs("none", out);
    }
}

static void put_allowed(FILE *out, const setting_t *s) {
    if (s->doc_allowed) {
        fputs(s->doc_allowed, out);
        return;
    }
    switch (s->type) {
    case SET_UINT:
        fprintf(out, "%u..%u", (unsigned)s->min, (unsigned)s->max);
        return;
    case SET_BOOL:
        fputs("`true`, `false`", out);
        return;
    case SET_ENUM:
        put_words(out, s, ", ");
        return;
    case SET_FILE:
        fputs("file name", out);
        return;
    default:
        fputs("mapping", out);
    }
}

void config_settings_markdown(FILE *out) {
    fputs("| setting | default | allowed | on SIGHUP | meaning |\n"
          "|---|---|---|---|---|\n",
          out);
    for (size_t i = 0; i < config_settings_count; i++) {
        const setting_t *s = &config_settings[i];
        if (!s->doc)
            continue;
        fprintf(out, "| `%s` | ", s->path);
        put_default(out, s);
        fputs(" | ", out);
        put_allowed(out, s);
        fprintf(out, " | %s | %s |\n", s->flags & SETTING_RESTART ? "restart" : "applies", s->doc);
    }
}
