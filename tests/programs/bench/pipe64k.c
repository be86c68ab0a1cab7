/* 64 KiB fd_write / fd_read throughput through a pipe, raw calls.
 * argv[1] = "write" (MiB given in argv[2] to stdout) or "read" (stdin to EOF).
 * Times itself; prints "ns=<n> bytes=<n>" to stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#define BLOCK 65536

static uint8_t buf[BLOCK];

static uint64_t now(void) {
    __wasi_timestamp_t t = 0;
    (void)__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t);
    return t;
}

int main(int argc, char **argv) {
    int writing = argc > 1 && strcmp(argv[1], "write") == 0;
    uint64_t total = 0, t0, t1;
    if (writing) {
        uint64_t want = (argc > 2 ? strtoull(argv[2], NULL, 10) : 256) << 20;
        memset(buf, 'w', sizeof buf);
        t0 = now();
        while (total < want) {
            __wasi_ciovec_t iov = {buf, BLOCK};
            __wasi_size_t n = 0;
            if (__wasi_fd_write(1, &iov, 1, &n) != 0) return 1;
            total += n;
        }
        t1 = now();
    } else {
        t0 = now();
        for (;;) {
            __wasi_iovec_t iov = {buf, BLOCK};
            __wasi_size_t n = 0;
            if (__wasi_fd_read(0, &iov, 1, &n) != 0) return 1;
            if (n == 0) break;
            total += n;
        }
        t1 = now();
    }
    fprintf(stderr, "ns=%llu bytes=%llu\n", (unsigned long long)(t1 - t0),
            (unsigned long long)total);
    return 0;
}
