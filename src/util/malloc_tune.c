/* Why fastbins off: librdkafka allocates each record and each of its headers
 * on the producing thread and frees them in bursts as delivery reports are
 * served. With QoS 0 (no window) many thousands of small chunks then sit in
 * glibc's fastbins, and every larger request walks and merges them all
 * (malloc_consolidate) through cold memory. Without fastbins they go to the
 * tcache and the ordinary bins: CPU per QoS 0 message with the default
 * headers 1.4-1.8x lower (docs/performance.md, issue 17). */
#include "util/malloc_tune.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

bool m2k_malloc_tune(void) {
#ifdef M_MXFAST
    const char *t = getenv("GLIBC_TUNABLES");
    if (t != NULL && strstr(t, "mxfast") != NULL)
        return false;
    return mallopt(M_MXFAST, 0) == 1;
#else
    return false;
#endif
}
