/* Shared by the password file (passwd_file.c) and the ACL (acl.c). Private to
 * src/auth/. */
#ifndef M2K_AUTH_INT_H
#define M2K_AUTH_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Formats a load error into errbuf when the caller gave one. */
static inline void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void set_err(char *errbuf, size_t errlen, const char *fmt, ...) {
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

#endif
