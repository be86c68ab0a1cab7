/* sched_yield, then proc_exit with the code given as argv[1] (stdout flushed first). */
#include <stdlib.h>

#include "wasitest.h"

int main(int argc, char **argv) {
    CHECK("sched_yield", __wasi_sched_yield(), E_SUCCESS);
    CHECK("sched_yield again", __wasi_sched_yield(), E_SUCCESS);
    int code = argc > 1 ? atoi(argv[1]) : 0;
    printf("exiting with %d", code); /* no newline: the runtime must not lose it */
    fflush(stdout);
    __wasi_proc_exit((__wasi_exitcode_t)code);
}
