/* sock_accept/recv/send/shutdown on things that are not sockets, and on closed fds.
 * The socket success paths are exercised by the echo servers under a real listener. */
#include "wasitest.h"

int main(void) {
    __wasi_errno_t e;
    __wasi_fd_t f = open_at(PREOPEN, "hello.txt", 0, 0, &e);
    CHECK("open hello.txt", e, E_SUCCESS);
    __wasi_fd_t got = 0;
    char buf[8];
    __wasi_iovec_t iov = {(uint8_t *)buf, sizeof buf};
    __wasi_ciovec_t ciov = {(const uint8_t *)"x", 1};
    __wasi_size_t n = 0;
    __wasi_roflags_t ro = 0;
    static const __wasi_fd_t targets[] = {PREOPEN, 0, 1};
    static const char *names[] = {"preopen dir", "stdin", "stdout"};
    for (int i = 0; i < 3; i++) {
        char what[64];
        __wasi_fd_t fd = targets[i];
        snprintf(what, sizeof what, "sock_accept on %s", names[i]);
        CHECK_IN(what, __wasi_sock_accept(fd, 0, &got), E_NOTSOCK, E_BADF, E_NOTSUP, E_NOTCAPABLE);
        snprintf(what, sizeof what, "sock_recv on %s", names[i]);
        CHECK_IN(what, __wasi_sock_recv(fd, &iov, 1, 0, &n, &ro), E_NOTSOCK, E_BADF, E_NOTSUP,
                 E_NOTCAPABLE);
        snprintf(what, sizeof what, "sock_send on %s", names[i]);
        CHECK_IN(what, __wasi_sock_send(fd, &ciov, 1, 0, &n), E_NOTSOCK, E_BADF, E_NOTSUP,
                 E_NOTCAPABLE);
        snprintf(what, sizeof what, "sock_shutdown on %s", names[i]);
        CHECK_IN(what, __wasi_sock_shutdown(fd, __WASI_SDFLAGS_WR), E_NOTSOCK, E_BADF, E_NOTSUP,
                 E_NOTCAPABLE);
    }
    CHECK_IN("sock_recv on a file", __wasi_sock_recv(f, &iov, 1, 0, &n, &ro), E_NOTSOCK, E_BADF,
             E_NOTSUP, E_NOTCAPABLE);
    CHECK_IN("sock_shutdown on a file", __wasi_sock_shutdown(f, __WASI_SDFLAGS_RD), E_NOTSOCK,
             E_BADF, E_NOTSUP, E_NOTCAPABLE);
    CHECK("sock_accept on a closed fd", __wasi_sock_accept(42, 0, &got), E_BADF);
    CHECK("sock_recv on a closed fd", __wasi_sock_recv(42, &iov, 1, 0, &n, &ro), E_BADF);
    CHECK("sock_send on a closed fd", __wasi_sock_send(42, &ciov, 1, 0, &n), E_BADF);
    CHECK("sock_shutdown on a closed fd", __wasi_sock_shutdown(42, __WASI_SDFLAGS_WR), E_BADF);
    return finish();
}
