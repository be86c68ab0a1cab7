/* Opening files until the host says no: the guest gets MFILE/NFILE (not a crash), and
 * everything works again once it closes them. argv[1] = most opens to try. */
#include <stdlib.h>

#include "wasitest.h"

static __wasi_fd_t fds[200000];

int main(int argc, char **argv) {
    int limit = argc > 1 ? atoi(argv[1]) : 5000;
    if (limit > 200000) limit = 200000;
    __wasi_errno_t e = E_SUCCESS;
    int opened = 0;
    while (opened < limit) {
        fds[opened] = open_at(PREOPEN, "hello.txt", 0, 0, &e);
        if (e != E_SUCCESS) break;
        opened++;
    }
    /* wasmtime answers IO where the host said EMFILE */
    CHECK_IN("why the opening stopped", e, E_SUCCESS, 33 /* MFILE */, 41 /* NFILE */, E_IO);
    fprintf(stderr, "opened %d\n", opened);
    CHECK_TRUE("opened a good number", opened >= 100);
    int bad = 0;
    for (int i = 0; i < opened; i++) bad += __wasi_fd_close(fds[i]) != E_SUCCESS;
    CHECK("close failures", bad, 0);
    __wasi_fd_t f = open_at(PREOPEN, "hello.txt", 0, 0, &e);
    CHECK("open after closing them all", e, E_SUCCESS);
    char buf[16];
    __wasi_size_t n = 0;
    CHECK("and read", read_some(f, buf, sizeof buf, &n), E_SUCCESS);
    CHECK("12 bytes", n, 12);
    return finish();
}
