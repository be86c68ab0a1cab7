/* path_* calls: directories, unlink, rename, hard and symbolic links, filestat by path. */
#include "wasitest.h"

int main(void) {
    __wasi_errno_t e;
    __wasi_filestat_t fs;
    CHECK("path_create_directory", __wasi_path_create_directory(PREOPEN, "d1"), E_SUCCESS);
    CHECK("path_create_directory again", __wasi_path_create_directory(PREOPEN, "d1"), E_EXIST);
    CHECK("path_create_directory nested missing",
          __wasi_path_create_directory(PREOPEN, "nope/d2"), E_NOENT);
    CHECK("path_create_directory under a file",
          __wasi_path_create_directory(PREOPEN, "hello.txt/d2"), E_NOTDIR);
    CHECK("path_create_directory nested", __wasi_path_create_directory(PREOPEN, "d1/d2"),
          E_SUCCESS);
    CHECK("path_filestat_get dir", __wasi_path_filestat_get(PREOPEN, 0, "d1/d2", &fs), E_SUCCESS);
    CHECK("d1/d2 is a dir", fs.filetype, FT_DIR);

    /* relative to an opened directory fd, not only the preopen */
    __wasi_fd_t d1 = open_dir(PREOPEN, "d1", &e);
    CHECK("open d1", e, E_SUCCESS);
    __wasi_fd_t f = open_at(d1, "d2/f.txt", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK("create d1/d2/f.txt via d1", e, E_SUCCESS);
    CHECK("write f.txt", write_all(f, "ffff", 4), E_SUCCESS);
    CHECK("close f.txt", __wasi_fd_close(f), E_SUCCESS);

    CHECK("path_remove_directory non-empty", __wasi_path_remove_directory(PREOPEN, "d1/d2"),
          E_NOTEMPTY);
    CHECK("path_remove_directory on a file",
          __wasi_path_remove_directory(PREOPEN, "d1/d2/f.txt"), E_NOTDIR);
    CHECK("path_remove_directory missing", __wasi_path_remove_directory(PREOPEN, "zz"), E_NOENT);
    CHECK_IN("path_unlink_file on a dir", __wasi_path_unlink_file(PREOPEN, "d1/d2"), E_ISDIR,
             E_PERM);
    CHECK("path_unlink_file missing", __wasi_path_unlink_file(PREOPEN, "zz.txt"), E_NOENT);

    /* hard link */
    CHECK("path_link", __wasi_path_link(PREOPEN, 0, "d1/d2/f.txt", PREOPEN, "hard.txt"), E_SUCCESS);
    CHECK("path_filestat_get hard.txt", __wasi_path_filestat_get(PREOPEN, 0, "hard.txt", &fs),
          E_SUCCESS);
    CHECK("nlink 2", fs.nlink, 2);
    CHECK("hard size", fs.size, 4);
    CHECK("path_link onto existing",
          __wasi_path_link(PREOPEN, 0, "hello.txt", PREOPEN, "hard.txt"), E_EXIST);
    CHECK("path_link missing source", __wasi_path_link(PREOPEN, 0, "zz", PREOPEN, "zz2"), E_NOENT);
    CHECK_IN("path_link of a dir", __wasi_path_link(PREOPEN, 0, "d1", PREOPEN, "d1link"), E_PERM,
             E_ACCES, E_NOTSUP);
    CHECK("path_unlink_file hard.txt", __wasi_path_unlink_file(PREOPEN, "hard.txt"), E_SUCCESS);
    CHECK("path_filestat_get after unlink",
          __wasi_path_filestat_get(PREOPEN, 0, "hard.txt", &fs), E_NOENT);

    /* symlinks */
    CHECK("path_symlink", __wasi_path_symlink("sub/a.txt", PREOPEN, "sym"), E_SUCCESS);
    CHECK("path_symlink onto existing", __wasi_path_symlink("x", PREOPEN, "hello.txt"), E_EXIST);
    char buf[64];
    __wasi_size_t n = 0;
    memset(buf, 0, sizeof buf);
    CHECK("path_readlink", __wasi_path_readlink(PREOPEN, "sym", (uint8_t *)buf, sizeof buf, &n),
          E_SUCCESS);
    CHECK("readlink length (no NUL)", n, 9);
    CHECK_TRUE("readlink content", memcmp(buf, "sub/a.txt", 9) == 0);
    memset(buf, 0, sizeof buf);
    e = __wasi_path_readlink(PREOPEN, "sym", (uint8_t *)buf, 4, &n);
    CHECK_IN("path_readlink short buffer", e, E_SUCCESS, E_RANGE);
    if (e == E_SUCCESS) CHECK_TRUE("short readlink truncates", n == 4 && memcmp(buf, "sub/", 4) == 0);
    CHECK("path_readlink on a file",
          __wasi_path_readlink(PREOPEN, "hello.txt", (uint8_t *)buf, sizeof buf, &n), E_INVAL);
    CHECK("path_readlink missing",
          __wasi_path_readlink(PREOPEN, "zz", (uint8_t *)buf, sizeof buf, &n), E_NOENT);
    CHECK("path_filestat_get nofollow", __wasi_path_filestat_get(PREOPEN, 0, "sym", &fs), E_SUCCESS);
    CHECK("nofollow filetype symlink", fs.filetype, FT_SYMLINK);
    CHECK("nofollow size = target length", fs.size, 9);
    CHECK("path_filestat_get follow",
          __wasi_path_filestat_get(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "sym", &fs),
          E_SUCCESS);
    CHECK("follow filetype regular", fs.filetype, FT_REG);
    CHECK("follow size", fs.size, 2);
    CHECK("follow a dangling link",
          __wasi_path_filestat_get(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "dangling", &fs),
          E_NOENT);
    CHECK("path_filestat_get through a dir link",
          __wasi_path_filestat_get(PREOPEN, 0, "link_dir/b.txt", &fs), E_SUCCESS);
    CHECK("via link_dir size", fs.size, 3);
    __wasi_fd_t nf = (__wasi_fd_t)-1;
    e = __wasi_path_open(PREOPEN, 0, "link_in", 0, __WASI_RIGHTS_FD_READ, 0, 0, &nf);
    CHECK_IN("open a symlink without SYMLINK_FOLLOW", e, E_LOOP, E_NOTSUP);
    CHECK("path_unlink_file removes the link, not the target",
          __wasi_path_unlink_file(PREOPEN, "sym"), E_SUCCESS);
    CHECK("target still there", __wasi_path_filestat_get(PREOPEN, 0, "sub/a.txt", &fs), E_SUCCESS);

    /* an unlinked file stays readable through its open fd */
    __wasi_fd_t u = open_at(PREOPEN, "doomed.txt", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK("create doomed.txt", e, E_SUCCESS);
    CHECK("write doomed.txt", write_all(u, "still here", 10), E_SUCCESS);
    CHECK("unlink doomed.txt", __wasi_path_unlink_file(PREOPEN, "doomed.txt"), E_SUCCESS);
    CHECK("fd_filestat_get unlinked", __wasi_fd_filestat_get(u, &fs), E_SUCCESS);
    CHECK("unlinked nlink", fs.nlink, 0);
    CHECK("unlinked size", fs.size, 10);
    memset(buf, 0, sizeof buf);
    CHECK("fd_pread unlinked", __wasi_fd_pread(u, &(__wasi_iovec_t){(uint8_t *)buf, 10}, 1, 0, &n),
          E_SUCCESS);
    CHECK_TRUE("unlinked content", memcmp(buf, "still here", 10) == 0);
    CHECK("close unlinked", __wasi_fd_close(u), E_SUCCESS);
    /* a directory fd survives the directory being renamed, and fails after rmdir */
    CHECK("mkdir moving", __wasi_path_create_directory(PREOPEN, "moving"), E_SUCCESS);
    __wasi_fd_t mv = open_dir(PREOPEN, "moving", &e);
    CHECK("open moving", e, E_SUCCESS);
    CHECK("rename moving -> moved", __wasi_path_rename(PREOPEN, "moving", PREOPEN, "moved"),
          E_SUCCESS);
    CHECK("create through the moved dir fd", __wasi_path_create_directory(mv, "kid"), E_SUCCESS);
    CHECK("kid is under moved", __wasi_path_filestat_get(PREOPEN, 0, "moved/kid", &fs), E_SUCCESS);
    CHECK("rmdir moved/kid", __wasi_path_remove_directory(PREOPEN, "moved/kid"), E_SUCCESS);
    CHECK("rmdir moved", __wasi_path_remove_directory(PREOPEN, "moved"), E_SUCCESS);
    CHECK_IN("create in a removed dir", __wasi_path_create_directory(mv, "kid2"), E_NOENT,
             E_PERM, E_NOTCAPABLE);
    CHECK("close moved dir fd", __wasi_fd_close(mv), E_SUCCESS);

    /* set times by path, following or not */
    const __wasi_timestamp_t T = 1234567890000000007ull;
    CHECK("path_filestat_set_times",
          __wasi_path_filestat_set_times(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "link_in", T,
                                         T, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM),
          E_SUCCESS);
    CHECK("path_filestat_get hello.txt", __wasi_path_filestat_get(PREOPEN, 0, "hello.txt", &fs),
          E_SUCCESS);
    CHECK("mtim set through the link", fs.mtim, T);
    CHECK("path_filestat_set_times missing",
          __wasi_path_filestat_set_times(PREOPEN, 0, "zz", T, T, __WASI_FSTFLAGS_MTIM), E_NOENT);

    /* rename */
    CHECK("path_rename file", __wasi_path_rename(PREOPEN, "d1/d2/f.txt", PREOPEN, "moved.txt"),
          E_SUCCESS);
    CHECK("old name gone", __wasi_path_filestat_get(PREOPEN, 0, "d1/d2/f.txt", &fs), E_NOENT);
    CHECK("path_rename over a file", __wasi_path_rename(PREOPEN, "moved.txt", PREOPEN, "sub/b.txt"),
          E_SUCCESS);
    CHECK("path_filestat_get sub/b.txt", __wasi_path_filestat_get(PREOPEN, 0, "sub/b.txt", &fs),
          E_SUCCESS);
    CHECK("replaced content size", fs.size, 4);
    CHECK("path_rename dir", __wasi_path_rename(PREOPEN, "d1", PREOPEN, "d3"), E_SUCCESS);
    CHECK("path_rename file over a dir", __wasi_path_rename(PREOPEN, "hello.txt", PREOPEN, "d3"),
          E_ISDIR);
    CHECK("path_rename dir over a file", __wasi_path_rename(PREOPEN, "d3", PREOPEN, "hello.txt"),
          E_NOTDIR);
    CHECK("path_rename dir over a non-empty dir", __wasi_path_rename(PREOPEN, "empty_dir", PREOPEN, "sub"),
          E_NOTEMPTY);
    CHECK("path_rename dir into itself", __wasi_path_rename(PREOPEN, "d3", PREOPEN, "d3/d2/x"),
          E_INVAL);
    CHECK("path_rename missing", __wasi_path_rename(PREOPEN, "zz", PREOPEN, "yy"), E_NOENT);
    CHECK("path_rename via an opened dir fd",
          __wasi_path_rename(d1, "d2", PREOPEN, "d2_top"), E_SUCCESS);
    CHECK("path_remove_directory d2_top", __wasi_path_remove_directory(PREOPEN, "d2_top"),
          E_SUCCESS);
    CHECK("path_remove_directory d3", __wasi_path_remove_directory(PREOPEN, "d3"), E_SUCCESS);
    CHECK("fd_close d1", __wasi_fd_close(d1), E_SUCCESS);
    CHECK("path ops on a closed dir fd", __wasi_path_create_directory(d1, "x"), E_BADF);
    CHECK_IN("path ops on stdout", __wasi_path_create_directory(1, "x"), E_NOTDIR, E_BADF);
    return finish();
}
