/* fd_prestat_get / fd_prestat_dir_name: the scan wasi-libc does at start. */
#include "wasitest.h"

int main(void) {
    __wasi_prestat_t ps;
    CHECK("fd_prestat_get 3", __wasi_fd_prestat_get(PREOPEN, &ps), E_SUCCESS);
    CHECK("prestat tag is dir", ps.tag, __WASI_PREOPENTYPE_DIR);
    CHECK("prestat name length of /", ps.u.dir.pr_name_len, 1);
    char name[8] = {0};
    CHECK("fd_prestat_dir_name", __wasi_fd_prestat_dir_name(PREOPEN, (uint8_t *)name, 1),
          E_SUCCESS);
    CHECK("dir name byte", name[0], '/');
    CHECK("no NUL written past the length", name[1], 0);
    memset(name, 'x', sizeof name);
    CHECK("fd_prestat_dir_name bigger buffer",
          __wasi_fd_prestat_dir_name(PREOPEN, (uint8_t *)name, sizeof name), E_SUCCESS);
    CHECK("bigger buffer: first byte", name[0], '/');
    CHECK_IN("fd_prestat_dir_name zero buffer",
             __wasi_fd_prestat_dir_name(PREOPEN, (uint8_t *)name, 0), E_NAMETOOLONG, E_INVAL);
    CHECK("fd_prestat_get 4 (past the preopens)", __wasi_fd_prestat_get(4, &ps), E_BADF);
    CHECK("fd_prestat_get 0 (stdin)", __wasi_fd_prestat_get(0, &ps), E_BADF);
    CHECK("fd_prestat_get 1000", __wasi_fd_prestat_get(1000, &ps), E_BADF);
    /* A directory opened by path is not a preopen. */
    __wasi_errno_t e;
    __wasi_fd_t d = open_dir(PREOPEN, "sub", &e);
    CHECK("open sub", e, E_SUCCESS);
    CHECK("fd_prestat_get on an opened dir", __wasi_fd_prestat_get(d, &ps), E_BADF);
    __wasi_fdstat_t st;
    CHECK("fd_fdstat_get preopen", __wasi_fd_fdstat_get(PREOPEN, &st), E_SUCCESS);
    CHECK("preopen filetype", st.fs_filetype, FT_DIR);
    return finish();
}
