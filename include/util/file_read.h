/* Reads a whole small file (configuration, password file, ACL) into memory. */
#ifndef M2K_FILE_READ_H
#define M2K_FILE_READ_H

#include <stddef.h>

/* Reads `path` into a NUL-terminated heap buffer (*out, free() it; *len
 * excludes the NUL). A file larger than max_len is refused. Returns 0, or -1
 * with "PATH: cannot open: REASON", "PATH: cannot read: REASON", "PATH: larger
 * than N bytes" or "PATH: out of memory" in errbuf (no newline). */
int file_read_all(const char *path, size_t max_len, char **out, size_t *len, char *errbuf,
                  size_t errlen);

#endif
