/* The settings table and the pieces of the YAML walk its rows point at.
 * Private to config/: config.c walks the file with the table, settings.c
 * holds the table (and what is derived from it: defaults, the reload
 * comparison, the docs table), config_lists.c the parsers of the rows that
 * are lists or free-form mappings (listeners, topics, kafka.properties).
 *
 * One row per setting, as Redis's standardConfig: its YAML path, type,
 * range or words, default, whether a SIGHUP applies it, and its line of
 * documentation. A row's field is an offset into config_t, or into the item
 * struct for the rows of a list item ("listeners[].tls.cert" is an offset
 * into config_listener_t). Sections ("mqtt", "listeners[].tls") are rows
 * too: the keys a mapping may hold are the rows one level below it. */
#ifndef M2K_CONFIG_SETTINGS_H
#define M2K_CONFIG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config/config.h"

typedef enum {
    SET_SECTION, /* a mapping of the rows below it; a field, if any, is a bool "present" */
    SET_LIST,    /* a list of mappings of the rows "path[].x" (.min items; .missing when
                    fewer), each parsed by .item into the array at .off */
    SET_MAP,     /* free keys to string values: config_property_t[] at .off, count at .count_off */
    SET_BOOL,
    SET_UINT,    /* uint32_t from .min to .max */
    SET_STRING,  /* a non-empty string (.expected names what an empty one should be) */
    SET_FILE,    /* a non-empty string naming a file the daemon reads */
    SET_ENUM,    /* one of .words, stored as int */
    SET_LISTEN,  /* "IPv4:port" or "[IPv6]:port" (char * at .off); parsed by .parse */
    SET_CUSTOM,  /* parsed by .parse */
    SET_ALIAS,   /* another place for the row .alias (same value, set once) */
    SET_STRINGS, /* a list of strings: char ** at .off, size_t count at .count_off; parsed
                    (and checked) by .parse */
} setting_type_t;

/* MQTT's largest packet: 1 byte header, 4 bytes remaining length, 268435455. */
#define CONFIG_MQTT_MAX_PACKET 268435460u

enum {
    SETTING_RESTART = 1u << 0,      /* a SIGHUP does not apply it; a change is named */
    SETTING_REQUIRED = 1u << 1,     /* its key must be there (see .missing) */
    SETTING_DERIVED = 1u << 2,      /* its default depends on other settings (config.c) */
    SETTING_LATE = 1u << 3,         /* parsed after the rest of its section */
    SETTING_STRING_FIRST = 1u << 4, /* SET_ENUM: "expected a string" before the words */
    SETTING_QUOTED = 1u << 5,       /* SET_ENUM: words look like numbers; quote them */
    SETTING_POS = 1u << 6,        /* config_pos_t of the value (a section's mapping) at .pos_off */
    SETTING_NULL_EMPTY = 1u << 7, /* an empty plain value is "" (topics[].key) */
};

typedef struct {
    const char *word;
    int value;
} setting_word_t;

typedef struct setting setting_t;
typedef struct parse_ctx parse_ctx_t;

/* Parses the value `v` of row `s` into the struct `base` (config_t, or the
 * list item); `where` is the path as messages name it ("listeners[2].tls"). */
typedef void (*setting_parse_fn)(parse_ctx_t *c, const setting_t *s, yaml_node_t *v,
                                 const char *where, void *base);
/* One item (a mapping) of a SET_LIST row: its keys are the rows below `sec`
 * ("topics[]"); `where` names it ("topics[3]"), `idx` is its place. */
typedef void (*setting_item_fn)(parse_ctx_t *c, const setting_t *s, yaml_node_t *item,
                                const char *sec, const char *where, size_t idx, void *base);
/* A section's checks across its keys, after they are parsed; found[i] is
 * the value of row i (NULL when absent). */
typedef void (*setting_check_fn)(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                                 yaml_node_t *const *found);

struct setting {
    const char *path; /* "mqtt.max_inflight", "listeners[].tls.cert" */
    setting_type_t type;
    unsigned flags;
    bool field;             /* .off names a field (sections without a "present" flag have none) */
    size_t off;             /* offsetof(config_t, ...) or offsetof(<list item>, ...) */
    size_t pos_off;         /* SETTING_POS */
    size_t count_off;       /* SET_LIST, SET_MAP: offsetof the size_t count */
    size_t item_size;       /* SET_LIST: the item struct's size */
    uint32_t min, max, def; /* SET_UINT range (SET_LIST: .min items); default */
    const setting_word_t *words; /* SET_ENUM, ended by {NULL, 0} */
    const char *const *defaults; /* SET_MAP: name, value, ..., NULL (applied first) */
    const char *expected;        /* SET_STRING: what an empty value should have been */
    const char *missing;         /* SETTING_REQUIRED: what the "missing" message calls it;
                                    SET_LIST: the message when it has fewer than .min items */
    const char *alias;           /* SET_ALIAS: the row it stands for */
    setting_parse_fn parse;      /* SET_MAP, SET_LISTEN, SET_CUSTOM */
    setting_item_fn item;        /* SET_LIST */
    setting_check_fn check;      /* SET_SECTION, optional */
    const char *restart_note;    /* SETTING_RESTART: what stays ("still using %s": old value) */
    const char *doc_default;     /* docs: the default when it is not the plain .def */
    const char *doc_allowed;     /* docs: the allowed values when not derived from the type */
    const char *doc;             /* docs: one line; NULL for a namespace section or an alias */
};

extern const setting_t config_settings[];
extern const size_t config_settings_count;
#define SETTINGS_MAX 128 /* config_settings_count is below it (checked in settings.c) */

/* The row with this path, or NULL. */
const setting_t *settings_find(const char *path);
/* Whether `s` is one level below section `sec` ("" = the top level); *name
 * is then its key. */
bool settings_is_child(const setting_t *s, const char *sec, const char **name);
/* Writes the plain defaults (.def) of every row below `sec` that is not in
 * a list item below it into `base`; SET_MAP defaults are added by config.c. */
void settings_defaults(const char *sec, void *base);

/* ---- the YAML walk (config.c), for the parsers in config_lists.c ---- */

struct parse_ctx {
    yaml_document_t *doc;
    struct errs *errs;
    config_t *cfg;
    config_pos_t seen[SETTINGS_MAX]; /* where each row outside lists was set; line 0: not */
    /* The keys of the large mapping cfg_pair_key walks (open addressing):
     * its duplicate check stays linear however many keys a mapping has. */
    struct {
        const yaml_node_t *map;
        const yaml_node_pair_t *next; /* the pair expected next */
        yaml_node_t **slots;
        size_t cap; /* a power of two, at least twice the pairs */
    } keys;
};

config_pos_t cfg_pos_of(const yaml_node_t *n);
bool cfg_is_null(const yaml_node_t *n);
const char *cfg_describe(const yaml_node_t *n, char *buf, size_t len);
void cfg_err(parse_ctx_t *c, config_pos_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cfg_oom(parse_ctx_t *c);
char *cfg_strdup(parse_ctx_t *c, const char *s);
/* A file name as the daemon opens it: a relative one is taken from the
 * configuration file's directory (a copy, NULL when out of memory). */
char *cfg_resolve_path(parse_ctx_t *c, const char *name);
/* Whether a Kafka property names a file (ssl.key.location, ...). */
bool cfg_property_is_file(const char *name, const char *value);
int cfg_get_string(parse_ctx_t *c, const yaml_node_t *n, const char *where, const char **out);
bool cfg_expect(parse_ctx_t *c, const yaml_node_t *n, yaml_node_type_t t, const char *where);
/* A "host:port" value: 0 with a malloc'd host, or -1 after reporting. */
int cfg_get_listen(parse_ctx_t *c, const yaml_node_t *n, const char *where, const char **s,
                   char **host, uint16_t *port);
bool cfg_same_endpoint(const char *h1, uint16_t p1, const char *h2, uint16_t p2);
int cfg_add_property(parse_ctx_t *c, const char *name, const char *value, config_pos_t pos);
/* A mapping pair's key, after reporting a key that is not a string or is a
 * duplicate (then NULL); *value is the pair's value. */
const char *cfg_pair_key(parse_ctx_t *c, const yaml_node_t *map, yaml_node_pair_t *pair,
                         const char *where, yaml_node_t **value);
/* The mapping `n` of section row `s`: its keys in file order, then what it
 * lacks, then its SETTING_LATE rows, then s->check. */
void cfg_parse_section(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                       void *base);

/* Walks the mapping `n` of section `sec` (a row path: "mqtt", "listeners[]"),
 * reporting keys that are not strings, duplicates and unknown keys (with
 * the list of known ones). With `parse`, each value is parsed into `base`
 * by its row, in file order (except SETTING_LATE rows, which
 * cfg_parse_section parses after the rest); without, the values are only
 * collected. found[i] is the value of row i. Returns false when a key was
 * bad. */
bool cfg_walk(parse_ctx_t *c, yaml_node_t *n, const char *sec, const char *where, void *base,
              yaml_node_t **found, bool parse);
/* Reports every SETTING_REQUIRED row below `sec` that `found` lacks (also
 * those of an absent section without a "present" field, such as kafka), at
 * the position of `n`; true when one was missing. */
bool cfg_check_required(parse_ctx_t *c, const yaml_node_t *n, const char *sec, const char *where,
                        yaml_node_t *const *found);
/* The value collected for the row with this path, or NULL. */
yaml_node_t *cfg_found(yaml_node_t *const *found, const char *path);

/* ---- the parsers of the list and mapping rows (config_lists.c) ---- */

void cfg_parse_listener(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                        const char *where, size_t idx, void *base);
void cfg_check_tls(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                   yaml_node_t *const *found);
void cfg_parse_properties(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                          void *base);
void cfg_parse_rule(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                    const char *where, size_t idx, void *base);
void cfg_parse_rule_string(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                           void *base);
void cfg_parse_downlink(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                        const char *where, size_t idx, void *base);
void cfg_check_retained(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                        yaml_node_t *const *found);
void cfg_parse_u64(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                   void *base);
void cfg_parse_unmapped(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                        void *base);
void cfg_check_websocket(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                         yaml_node_t *const *found);
void cfg_parse_origins(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                       void *base);
void cfg_parse_metrics_listen(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                              void *base);

#endif
