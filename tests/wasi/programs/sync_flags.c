/* Durability flags on path_open: what fd_fdstat_get reports, and fd_fdstat_set_flags after.
 * Prints one line per open; the test compares them with hand-written expectations. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

static void show(const char *label, __wasi_fdflags_t asked) {
    __wasi_fd_t fd;
    __wasi_errno_t e = __wasi_path_open(3, 0, "data.bin", __WASI_OFLAGS_CREAT,
                                        __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_FDSTAT_SET_FLAGS,
                                        0, asked, &fd);
    if (e != 0) {
        printf("%s open=%d\n", label, e);
        return;
    }
    __wasi_fdstat_t st;
    __wasi_fd_fdstat_get(fd, &st);
    /* handing back what the fd has, plus NONBLOCK: fcntl(F_SETFL, F_GETFL | O_NONBLOCK) */
    __wasi_errno_t keep = __wasi_fd_fdstat_set_flags(fd, st.fs_flags | __WASI_FDFLAGS_NONBLOCK);
    __wasi_fdstat_t after;
    __wasi_fd_fdstat_get(fd, &after);
    /* dropping a sync flag after open is refused: the host fd keeps it */
    __wasi_errno_t drop = __wasi_fd_fdstat_set_flags(fd, st.fs_flags & __WASI_FDFLAGS_APPEND);
    printf("%s flags=%d keep=%d after=%d drop=%d\n", label, st.fs_flags, keep, after.fs_flags, drop);
    __wasi_fd_close(fd);
}

int main(void) {
    show("plain", 0);
    show("append", __WASI_FDFLAGS_APPEND);
    show("append+sync", __WASI_FDFLAGS_APPEND | __WASI_FDFLAGS_SYNC);
    show("dsync", __WASI_FDFLAGS_DSYNC);
    show("rsync", __WASI_FDFLAGS_RSYNC);
    return 0;
}
