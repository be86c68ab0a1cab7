/* Guest traps: both runtimes must stop the guest with exit 134 and keep what it
 * already wrote. argv[1]: unreachable | stack | divzero | oob | ok */
#include <stdlib.h>

#include "wasitest.h"

static volatile int zero = 0;

static int recurse(volatile int depth) {
    volatile char pad[256];
    pad[0] = (char)depth;
    return recurse(depth + 1) + pad[0];
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "ok";
    printf("before %s\n", what);
    fflush(stdout);
    if (!strcmp(what, "unreachable")) __builtin_trap();
    if (!strcmp(what, "stack")) return recurse(0);
    if (!strcmp(what, "divzero")) return 10 / zero;
    if (!strcmp(what, "oob")) return *(volatile int *)(uintptr_t)0xFFFFFFF0u;
    printf("after %s\n", what);
    return 0;
}
