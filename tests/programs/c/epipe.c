/* Writing to a stdout whose reader has gone: fd_write must fail (POSIX: PIPE; wasmtime's
 * preview2 streams say IO), not kill the runtime. The test reads 10 bytes and closes
 * the pipe. Reports on stderr. */
#include "wasitest.h"

int main(void) {
    static uint8_t line[4096];
    memset(line, 'y', sizeof line);
    for (long i = 0; i < 100000; i++) {
        __wasi_ciovec_t iov = {line, sizeof line};
        __wasi_size_t n = 0;
        __wasi_errno_t e = __wasi_fd_write(1, &iov, 1, &n);
        if (e != E_SUCCESS) {
            char msg[64];
            int len = snprintf(msg, sizeof msg, "errno %d after %ld writes\n", e, i);
            __wasi_ciovec_t m = {(const uint8_t *)msg, (size_t)len};
            (void)__wasi_fd_write(2, &m, 1, &n);
            return 3;
        }
    }
    return 5;
}
