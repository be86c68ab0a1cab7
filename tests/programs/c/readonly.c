/* Under a read-only preopen (donjon run-wasm --dir-ro) nothing may change: every
 * write, create, delete, rename, link, truncate and times update is refused, and
 * reads still work. The test also compares the tree before and after. */
#include "wasitest.h"

#define FOLLOW __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW
#define REFUSED(what, got) CHECK_IN(what, got, E_PERM, E_NOTCAPABLE, 69 /* ROFS */, E_ACCES, E_BADF)

int main(void) {
    __wasi_errno_t e;
    __wasi_fd_t r = open_at(PREOPEN, "hello.txt", 0, 0, &e);
    /* asking for every right may be refused outright; read-only must work */
    if (e != E_SUCCESS) {
        e = __wasi_path_open(PREOPEN, FOLLOW, "hello.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &r);
    }
    CHECK("open hello.txt for reading", e, E_SUCCESS);
    char buf[32];
    __wasi_size_t n = 0;
    CHECK("read", read_some(r, buf, sizeof buf, &n), E_SUCCESS);
    CHECK("read 12", n, 12);
    REFUSED("write to it", write_all(r, "x", 1));
    __wasi_ciovec_t one = {(const uint8_t *)"x", 1};
    REFUSED("pwrite to it", __wasi_fd_pwrite(r, &one, 1, 0, &n));
    REFUSED("set_size", __wasi_fd_filestat_set_size(r, 0));
    REFUSED("fd set_times", __wasi_fd_filestat_set_times(r, 1, 1, __WASI_FSTFLAGS_MTIM));
    REFUSED("allocate", __wasi_fd_allocate(r, 0, 4096));
    __wasi_fd_t w;
    e = __wasi_path_open(PREOPEN, FOLLOW, "hello.txt", 0, __WASI_RIGHTS_FD_WRITE, 0, 0, &w);
    REFUSED("open for writing", e);
    e = __wasi_path_open(PREOPEN, FOLLOW, "hello.txt", __WASI_OFLAGS_TRUNC, __WASI_RIGHTS_FD_READ,
                         0, 0, &w);
    REFUSED("open with TRUNC", e);
    e = __wasi_path_open(PREOPEN, FOLLOW, "new.txt", __WASI_OFLAGS_CREAT, __WASI_RIGHTS_FD_READ, 0,
                         0, &w);
    REFUSED("create", e);
    e = __wasi_path_open(PREOPEN, FOLLOW, "sub/a.txt", 0, __WASI_RIGHTS_FD_READ,
                         0, __WASI_FDFLAGS_APPEND, &w);
    if (e == E_SUCCESS) REFUSED("append write", write_all(w, "x", 1));
    REFUSED("mkdir", __wasi_path_create_directory(PREOPEN, "newdir"));
    REFUSED("rmdir", __wasi_path_remove_directory(PREOPEN, "empty_dir"));
    REFUSED("unlink", __wasi_path_unlink_file(PREOPEN, "sub/b.txt"));
    REFUSED("unlink a symlink", __wasi_path_unlink_file(PREOPEN, "link_in"));
    REFUSED("rename", __wasi_path_rename(PREOPEN, "hello.txt", PREOPEN, "moved.txt"));
    REFUSED("link", __wasi_path_link(PREOPEN, 0, "hello.txt", PREOPEN, "hard.txt"));
    REFUSED("symlink", __wasi_path_symlink("hello.txt", PREOPEN, "sym"));
    REFUSED("path set_times",
            __wasi_path_filestat_set_times(PREOPEN, 0, "hello.txt", 1, 1, __WASI_FSTFLAGS_MTIM));
    REFUSED("path set_times through a link",
            __wasi_path_filestat_set_times(PREOPEN, FOLLOW, "link_in", 1, 1, __WASI_FSTFLAGS_MTIM));
    /* a directory opened from the read-only preopen is read-only too */
    __wasi_fd_t d = (__wasi_fd_t)-1;
    e = __wasi_path_open(PREOPEN, FOLLOW, "sub", __WASI_OFLAGS_DIRECTORY,
                         RIGHTS_ALL & ~(__wasi_rights_t)__WASI_RIGHTS_FD_WRITE, RIGHTS_ALL, 0, &d);
    if (e != E_SUCCESS) {
        e = __wasi_path_open(PREOPEN, FOLLOW, "sub", __WASI_OFLAGS_DIRECTORY,
                             __WASI_RIGHTS_FD_READDIR | __WASI_RIGHTS_PATH_OPEN, __WASI_RIGHTS_FD_READ,
                             0, &d);
    }
    CHECK("open sub", e, E_SUCCESS);
    REFUSED("create in sub", __wasi_path_create_directory(d, "x"));
    REFUSED("unlink in sub", __wasi_path_unlink_file(d, "a.txt"));
    REFUSED("rename out of sub", __wasi_path_rename(d, "a.txt", PREOPEN, "a2.txt"));
    e = __wasi_path_open(d, FOLLOW, "b.txt", 0, __WASI_RIGHTS_FD_WRITE, 0, 0, &w);
    REFUSED("open sub/b.txt for writing via sub", e);
    /* rights cannot be widened back */
    __wasi_fdstat_t st;
    CHECK("fdstat preopen", __wasi_fd_fdstat_get(PREOPEN, &st), E_SUCCESS);
    CHECK_TRUE("preopen lacks path_create_file",
               (st.fs_rights_base & __WASI_RIGHTS_PATH_CREATE_FILE) == 0);
    e = __wasi_fd_fdstat_set_rights(PREOPEN, RIGHTS_ALL, RIGHTS_ALL);
    CHECK_IN("widen preopen rights", e, E_NOTCAPABLE, E_NOTSUP);
    return finish();
}
