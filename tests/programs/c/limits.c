/* Sizes at the edges: more iovecs than the host's IOV_MAX, huge offsets and sizes,
 * sync fdflags. The spec allows short transfers, so the checks are on totals. */
#include <stdlib.h>

#include "wasitest.h"

#define NIOV 3000

static __wasi_ciovec_t ciov[NIOV];
static __wasi_iovec_t iov[NIOV];
static uint8_t data[NIOV], back[NIOV];

int main(void) {
    __wasi_errno_t e;
    __wasi_size_t n = 0;
    for (int i = 0; i < NIOV; i++) {
        data[i] = (uint8_t)(i * 7);
        ciov[i].buf = &data[i];
        ciov[i].buf_len = 1;
        iov[i].buf = &back[i];
        iov[i].buf_len = 1;
    }
    __wasi_fd_t f = open_at(PREOPEN, "iov.bin", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK("create iov.bin", e, E_SUCCESS);
    /* 3000 one-byte iovecs: a runtime may write fewer, but must not fail */
    size_t done = 0;
    int rounds = 0;
    while (done < NIOV && rounds++ < NIOV + 1) {
        e = __wasi_fd_write(f, ciov + done, NIOV - done, &n);
        if (e != E_SUCCESS || n == 0) break;
        done += n;
    }
    CHECK("fd_write 3000 iovecs", e, E_SUCCESS);
    CHECK("all bytes written", done, NIOV);
    __wasi_filesize_t pos;
    CHECK("seek 0", __wasi_fd_seek(f, 0, __WASI_WHENCE_SET, &pos), E_SUCCESS);
    done = 0;
    rounds = 0;
    while (done < NIOV && rounds++ < NIOV + 1) {
        e = __wasi_fd_read(f, iov + done, NIOV - done, &n);
        if (e != E_SUCCESS || n == 0) break;
        done += n;
    }
    CHECK("fd_read 3000 iovecs", e, E_SUCCESS);
    CHECK("all bytes read", done, NIOV);
    CHECK_TRUE("content", memcmp(data, back, NIOV) == 0);
    CHECK("fd_pwrite 3000 iovecs", __wasi_fd_pwrite(f, ciov, NIOV, 0, &n), E_SUCCESS);
    CHECK_TRUE("pwrite wrote some", n >= 1 && n <= NIOV);
    CHECK("fd_pread 3000 iovecs", __wasi_fd_pread(f, iov, NIOV, 0, &n), E_SUCCESS);
    CHECK_TRUE("pread read some", n >= 1 && n <= NIOV);

    /* offsets and sizes past what a file can be */
    const uint64_t HUGE = 1ull << 62;
    __wasi_ciovec_t one = {data, 1};
    __wasi_iovec_t rone = {back, 1};
    INFO("fd_pwrite at 2^62", __wasi_fd_pwrite(f, &one, 1, HUGE, &n));
    e = __wasi_fd_pread(f, &rone, 1, HUGE, &n);
    INFO("fd_pread at 2^62", e);
    if (e == E_SUCCESS) CHECK("pread at 2^62 reads nothing", n, 0);
    INFO("fd_pread at 2^63+1 (negative as off_t)", __wasi_fd_pread(f, &rone, 1, (1ull << 63) + 1, &n));
    INFO("fd_filestat_set_size 2^62", __wasi_fd_filestat_set_size(f, HUGE));
    INFO("fd_allocate 2^62", __wasi_fd_allocate(f, 0, HUGE));
    /* the host filesystem's maximum file size decides this one */
    CHECK_IN("fd_seek SET 2^63-1",
             __wasi_fd_seek(f, (int64_t)((1ull << 63) - 1), __WASI_WHENCE_SET, &pos), E_SUCCESS,
             E_INVAL, 61 /* OVERFLOW */);
    __wasi_filestat_t fs;
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(f, &fs), E_SUCCESS);
    CHECK_TRUE("the file did not grow to 2^62", fs.size < (1ull << 40));
    CHECK("fd_close", __wasi_fd_close(f), E_SUCCESS);

    /* sync flags: honoured, or refused as unsupported (wasmtime), never anything else */
    static const char *names[] = {"sync.txt", "dsync.txt", "rsync.txt"};
    static const __wasi_fdflags_t flags[] = {__WASI_FDFLAGS_SYNC, __WASI_FDFLAGS_DSYNC,
                                             __WASI_FDFLAGS_RSYNC};
    for (int i = 0; i < 3; i++) {
        char what[48];
        __wasi_fd_t s = open_at(PREOPEN, names[i], __WASI_OFLAGS_CREAT, flags[i], &e);
        snprintf(what, sizeof what, "open %s", names[i]);
        CHECK_IN(what, e, E_SUCCESS, E_NOTSUP);
        if (e == E_SUCCESS) {
            if (write_all(s, "s", 1) != E_SUCCESS) CHECK_TRUE("write with a sync flag", 0);
            __wasi_fd_close(s);
            __wasi_path_unlink_file(PREOPEN, names[i]); /* same tree either way */
        }
    }
    CHECK("unlink iov.bin", __wasi_path_unlink_file(PREOPEN, "iov.bin"), E_SUCCESS);
    return finish();
}
