/* One-byte fd_write calls to stdout, raw (no libc buffering): host-call overhead.
 * argv[1] = number of calls. Times itself; prints "ns=<n> calls=<n>" to stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <wasi/api.h>

static uint64_t now(void) {
    __wasi_timestamp_t t = 0;
    (void)__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t);
    return t;
}

int main(int argc, char **argv) {
    unsigned long calls = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    const uint8_t byte = 'x';
    __wasi_ciovec_t iov = {&byte, 1};
    __wasi_size_t n = 0;
    uint64_t t0 = now();
    for (unsigned long i = 0; i < calls; i++) {
        if (__wasi_fd_write(1, &iov, 1, &n) != 0 || n != 1) return 1;
    }
    uint64_t t1 = now();
    fprintf(stderr, "ns=%llu calls=%lu\n", (unsigned long long)(t1 - t0), calls);
    return 0;
}
