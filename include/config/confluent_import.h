/* Migration from Confluent MQTT Proxy: reads its Java properties file
 * (kafka-mqtt.properties) and writes the equivalent mqtt2kafka YAML, with a
 * "# not carried over: ..." comment for each setting without an equivalent
 * and a "# warning: ..." comment where a Java regex had to be rewritten. */
#ifndef M2K_CONFLUENT_IMPORT_H
#define M2K_CONFLUENT_IMPORT_H

#include <stddef.h>
#include <stdio.h>

/* Converts the file at `path`; writes YAML to `out`. Returns 0, or -1 with a
 * "file: message" line in errbuf (cannot read, not a properties file). */
int confluent_import(const char *path, FILE *out, char *errbuf, size_t errlen);
/* The same from memory; `name` stands in for the file name. */
int confluent_import_string(const char *text, size_t len, const char *name, FILE *out, char *errbuf,
                            size_t errlen);

/* Rewrites a Java regex (as Confluent's topic.regex.list uses it: a match of
 * the whole topic) into a POSIX extended regex anchored with ^ and $.
 * Returns 0 with the result in `out` (malloc'd) and one line per rewrite in
 * `notes` (malloc'd, may be ""), or -1 with the reason in `notes` when the
 * regex uses a construct POSIX ERE has no equivalent for. */
int confluent_regex_to_posix(const char *java, char **out, char **notes);

#endif
