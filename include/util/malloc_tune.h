/* glibc allocator settings for the daemon's allocation pattern. */
#ifndef M2K_MALLOC_TUNE_H
#define M2K_MALLOC_TUNE_H

#include <stdbool.h>

/* Turns glibc's fastbins off (mallopt M_MXFAST 0) unless the environment's
 * GLIBC_TUNABLES names mxfast (the operator's choice stands). Call once, at
 * start. Returns whether it changed the setting. */
bool m2k_malloc_tune(void);

#endif
