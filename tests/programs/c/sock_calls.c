/* sock_accept/recv/send/shutdown and poll_oneoff on real sockets, raw, under a listener
 * at fd 3. A Python client (test_wasi_sockets.py) plays the other side; "sync <n>"
 * lines on stdout tell it when to go on. */
#include "wasitest.h"

#define LISTENER 3
#define FT_SOCKET_STREAM 6

static void sync_point(int n) {
    printf("sync %d\n", n);
    fflush(stdout);
}

static __wasi_errno_t recv_n(__wasi_fd_t fd, char *buf, size_t len, __wasi_riflags_t flags,
                             __wasi_size_t *n, __wasi_roflags_t *ro) {
    __wasi_iovec_t iov = {(uint8_t *)buf, len};
    return __wasi_sock_recv(fd, &iov, 1, flags, n, ro);
}

static __wasi_errno_t send_s(__wasi_fd_t fd, const char *s, __wasi_size_t *n) {
    __wasi_ciovec_t iov = {(const uint8_t *)s, strlen(s)};
    return __wasi_sock_send(fd, &iov, 1, 0, n);
}

static __wasi_subscription_t sub(uint64_t userdata, uint8_t tag, __wasi_fd_t fd, uint64_t ns) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = userdata;
    s.u.tag = tag;
    if (tag == __WASI_EVENTTYPE_CLOCK) {
        s.u.u.clock.id = 1;
        s.u.u.clock.timeout = ns;
    } else {
        s.u.u.fd_read.file_descriptor = fd;
    }
    return s;
}

int main(void) {
    __wasi_fdstat_t st;
    __wasi_prestat_t ps;
    __wasi_filesize_t pos;
    CHECK("fd_fdstat_get listener", __wasi_fd_fdstat_get(LISTENER, &st), E_SUCCESS);
    CHECK("listener filetype", st.fs_filetype, FT_SOCKET_STREAM);
    CHECK("fd_prestat_get listener", __wasi_fd_prestat_get(LISTENER, &ps), E_BADF);
    CHECK("set listener NONBLOCK", __wasi_fd_fdstat_set_flags(LISTENER, __WASI_FDFLAGS_NONBLOCK),
          E_SUCCESS);
    __wasi_fd_t c = 0;
    CHECK("sock_accept with nothing pending", __wasi_sock_accept(LISTENER, 0, &c), E_AGAIN);
    CHECK("set listener blocking", __wasi_fd_fdstat_set_flags(LISTENER, 0), E_SUCCESS);
    sync_point(1); /* client: connect, send "hello world" */
    CHECK("sock_accept", __wasi_sock_accept(LISTENER, 0, &c), E_SUCCESS);
    CHECK_TRUE("accepted fd is new", c > LISTENER);
    CHECK("fd_fdstat_get conn", __wasi_fd_fdstat_get(c, &st), E_SUCCESS);
    CHECK("conn filetype", st.fs_filetype, FT_SOCKET_STREAM);
    CHECK("conn flags", st.fs_flags, 0);
    CHECK("fd_prestat_get conn", __wasi_fd_prestat_get(c, &ps), E_BADF);
    /* wasmtime answers BADF for fd_seek on any non-file (see stdio.c); Linux says SPIPE */
    CHECK_IN("fd_seek conn", __wasi_fd_seek(c, 0, __WASI_WHENCE_CUR, &pos), E_SPIPE, E_BADF);

    char buf[64];
    __wasi_size_t n = 0;
    __wasi_roflags_t ro = 99;
    /* WAITALL first: the client's 11 bytes may arrive in pieces */
    memset(buf, 0, sizeof buf);
    CHECK("sock_recv PEEK|WAITALL 11",
          recv_n(c, buf, 11, __WASI_RIFLAGS_RECV_PEEK | __WASI_RIFLAGS_RECV_WAITALL, &n, &ro),
          E_SUCCESS);
    CHECK("peek bytes", n, 11);
    CHECK("roflags", ro, 0);
    CHECK_TRUE("peek content", memcmp(buf, "hello world", 11) == 0);
    memset(buf, 0, sizeof buf);
    CHECK("sock_recv 5", recv_n(c, buf, 5, 0, &n, &ro), E_SUCCESS);
    CHECK("recv bytes", n, 5);
    CHECK_TRUE("peek did not consume", memcmp(buf, "hello", 5) == 0);
    CHECK("sock_recv WAITALL 6", recv_n(c, buf, 6, __WASI_RIFLAGS_RECV_WAITALL, &n, &ro),
          E_SUCCESS);
    CHECK("waitall bytes", n, 6);
    CHECK_TRUE("rest", memcmp(buf, " world", 6) == 0);

    /* nothing to read: a 50 ms clock wins; the socket is writable at once */
    __wasi_subscription_t subs[2];
    __wasi_event_t ev[2];
    subs[0] = sub(1, __WASI_EVENTTYPE_FD_READ, c, 0);
    subs[1] = sub(2, __WASI_EVENTTYPE_CLOCK, 0, 50000000ull);
    CHECK("poll idle socket", __wasi_poll_oneoff(subs, ev, 2, &n), E_SUCCESS);
    CHECK("idle: events", n, 1);
    CHECK("idle: the clock fired", ev[0].userdata, 2);
    subs[0] = sub(3, __WASI_EVENTTYPE_FD_WRITE, c, 0);
    CHECK("poll writable socket", __wasi_poll_oneoff(subs, ev, 1, &n), E_SUCCESS);
    CHECK("writable: userdata", ev[0].userdata, 3);
    CHECK("writable: error", ev[0].error, E_SUCCESS);

    CHECK("sock_send pong", send_s(c, "pong", &n), E_SUCCESS);
    CHECK("sent bytes", n, 4);
    sync_point(2); /* client: read "pong", send "x" */
    subs[0] = sub(4, __WASI_EVENTTYPE_FD_READ, c, 0);
    subs[1] = sub(5, __WASI_EVENTTYPE_CLOCK, 0, 10000000000ull);
    CHECK("poll readable socket", __wasi_poll_oneoff(subs, ev, 2, &n), E_SUCCESS);
    CHECK("readable: events", n, 1);
    CHECK("readable: userdata", ev[0].userdata, 4);
    /* a hint: exact for plain TCP, the ciphertext size under TLS */
    CHECK_TRUE("readable: nbytes >= 1", ev[0].fd_readwrite.nbytes >= 1);
    CHECK("sock_recv x", recv_n(c, buf, sizeof buf, 0, &n, &ro), E_SUCCESS);
    CHECK("x bytes", n, 1);

    CHECK("sock_shutdown WR", __wasi_sock_shutdown(c, __WASI_SDFLAGS_WR), E_SUCCESS);
    CHECK_IN("sock_send after shutdown WR", send_s(c, "late", &n), E_PIPE, E_NOTCONN);
    sync_point(3); /* client: see EOF, send "after", close */
    CHECK("sock_recv after", recv_n(c, buf, 5, __WASI_RIFLAGS_RECV_WAITALL, &n, &ro), E_SUCCESS);
    CHECK("after bytes", n, 5);
    CHECK("sock_recv at EOF", recv_n(c, buf, sizeof buf, 0, &n, &ro), E_SUCCESS);
    CHECK("EOF gives 0", n, 0);
    if (n > 0) { /* diagnose: what came instead of EOF */
        printf("unexpected bytes:");
        for (__wasi_size_t i = 0; i < n && i < 32; i++) printf(" %02x", (unsigned char)buf[i]);
        printf("\n");
    }
    subs[0] = sub(6, __WASI_EVENTTYPE_FD_READ, c, 0);
    CHECK("poll at EOF", __wasi_poll_oneoff(subs, ev, 1, &n), E_SUCCESS);
    CHECK("EOF is readable", ev[0].userdata, 6);
    CHECK_IN("EOF nbytes", ev[0].fd_readwrite.nbytes, 0, 1);
    CHECK("fd_close conn", __wasi_fd_close(c), E_SUCCESS);
    CHECK("sock_recv on closed conn", recv_n(c, buf, 1, 0, &n, &ro), E_BADF);

    /* second connection, accepted non-blocking */
    sync_point(4); /* client: connect, wait for sync 5 */
    __wasi_fd_t d = 0;
    CHECK("sock_accept NONBLOCK", __wasi_sock_accept(LISTENER, __WASI_FDFLAGS_NONBLOCK, &d),
          E_SUCCESS);
    CHECK("fd_fdstat_get d", __wasi_fd_fdstat_get(d, &st), E_SUCCESS);
    CHECK("d flags NONBLOCK", st.fs_flags, __WASI_FDFLAGS_NONBLOCK);
    CHECK("sock_recv with no data", recv_n(d, buf, sizeof buf, 0, &n, &ro), E_AGAIN);
    CHECK_IN("fd_read with no data", read_some(d, buf, sizeof buf, &n), E_AGAIN);
    sync_point(5); /* client: send "z", then keep reading until EOF */
    subs[0] = sub(7, __WASI_EVENTTYPE_FD_READ, d, 0);
    CHECK("poll d", __wasi_poll_oneoff(subs, ev, 1, &n), E_SUCCESS);
    CHECK("sock_recv z", recv_n(d, buf, sizeof buf, 0, &n, &ro), E_SUCCESS);
    CHECK("z bytes", n, 1);
    /* gathered send through fd_write on a socket */
    __wasi_ciovec_t iov[2] = {{(const uint8_t *)"ab", 2}, {(const uint8_t *)"cd\n", 3}};
    CHECK("sock_send 2 iovecs", __wasi_sock_send(d, iov, 2, 0, &n), E_SUCCESS);
    CHECK_TRUE("sent 1..5 bytes", n >= 1 && n <= 5);
    if (n < 5) CHECK("send rest", write_all(d, "abcd\n" + n, 5 - n), E_SUCCESS);
    /* 2000 one-byte iovecs: more than the host's IOV_MAX; a short send is fine */
    static __wasi_ciovec_t many[2000];
    for (int i = 0; i < 2000; i++) many[i] = (__wasi_ciovec_t){(const uint8_t *)"q", 1};
    size_t sent = 0;
    __wasi_errno_t se = E_SUCCESS;
    for (int round = 0; sent < 2000 && round < 2001; round++) {
        se = __wasi_sock_send(d, many + sent, 2000 - sent, 0, &n);
        if (se != E_SUCCESS || n == 0) break;
        sent += n;
    }
    CHECK("sock_send 2000 iovecs", se, E_SUCCESS);
    CHECK("sent all 2000", sent, 2000);
    CHECK("sock_shutdown RD|WR", __wasi_sock_shutdown(d, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR),
          E_SUCCESS);
    CHECK("fd_close d", __wasi_fd_close(d), E_SUCCESS);
    CHECK_IN("sock_shutdown on the listener", __wasi_sock_shutdown(LISTENER, __WASI_SDFLAGS_RD),
             E_NOTCONN, E_SUCCESS, E_NOTSUP);
    return finish();
}
