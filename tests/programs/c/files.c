/* Every fd_* call on a regular file, with its errors. Works in a fresh copy of the fixture. */
#include "wasitest.h"

int main(void) {
    __wasi_errno_t e;
    __wasi_fd_t fd = open_at(PREOPEN, "new.txt", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_EXCL, 0, &e);
    CHECK("path_open creat|excl", e, E_SUCCESS);
    CHECK_TRUE("new fd above the preopen", fd > PREOPEN && fd != (__wasi_fd_t)-1);
    open_at(PREOPEN, "new.txt", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_EXCL, 0, &e);
    CHECK("path_open creat|excl existing", e, E_EXIST);

    CHECK("fd_write", write_all(fd, "0123456789", 10), E_SUCCESS);
    __wasi_filesize_t pos = 99;
    CHECK("fd_tell", __wasi_fd_tell(fd, &pos), E_SUCCESS);
    CHECK("fd_tell after write", pos, 10);
    CHECK("fd_seek set 2", __wasi_fd_seek(fd, 2, __WASI_WHENCE_SET, &pos), E_SUCCESS);
    CHECK("fd_seek set result", pos, 2);
    CHECK("fd_seek cur +3", __wasi_fd_seek(fd, 3, __WASI_WHENCE_CUR, &pos), E_SUCCESS);
    CHECK("fd_seek cur result", pos, 5);
    CHECK("fd_seek end -1", __wasi_fd_seek(fd, -1, __WASI_WHENCE_END, &pos), E_SUCCESS);
    CHECK("fd_seek end result", pos, 9);
    CHECK("fd_seek before start", __wasi_fd_seek(fd, -100, __WASI_WHENCE_CUR, &pos), E_INVAL);
    CHECK("fd_tell unchanged by failed seeks", __wasi_fd_tell(fd, &pos), E_SUCCESS);
    CHECK("position still 9", pos, 9);
    CHECK("fd_seek past end", __wasi_fd_seek(fd, 20, __WASI_WHENCE_SET, &pos), E_SUCCESS);
    char buf[64];
    __wasi_size_t n = 99;
    CHECK("fd_read past end", read_some(fd, buf, sizeof buf, &n), E_SUCCESS);
    CHECK("fd_read past end gives 0", n, 0);

    /* scatter read */
    CHECK("fd_seek 0", __wasi_fd_seek(fd, 0, __WASI_WHENCE_SET, &pos), E_SUCCESS);
    char a[3], b[4];
    __wasi_iovec_t iov[3] = {{(uint8_t *)a, 3}, {(uint8_t *)buf, 0}, {(uint8_t *)b, 4}};
    CHECK("fd_read 3 iovecs", __wasi_fd_read(fd, iov, 3, &n), E_SUCCESS);
    /* short reads are allowed (wasmtime fills one iovec per call) */
    CHECK_TRUE("fd_read 3 iovecs: 3..7 bytes", n >= 3 && n <= 7);
    CHECK_TRUE("scatter content", memcmp(a, "012", 3) == 0 && memcmp(b, "3456", n - 3) == 0);
    CHECK("fd_seek 7", __wasi_fd_seek(fd, 7, __WASI_WHENCE_SET, &pos), E_SUCCESS);

    /* pread / pwrite do not move the position */
    CHECK("fd_tell before pread", __wasi_fd_tell(fd, &pos), E_SUCCESS);
    CHECK("position 7", pos, 7);
    __wasi_iovec_t riov = {(uint8_t *)buf, 4};
    CHECK("fd_pread at 1", __wasi_fd_pread(fd, &riov, 1, 1, &n), E_SUCCESS);
    CHECK("fd_pread bytes", n, 4);
    CHECK_TRUE("fd_pread content", memcmp(buf, "1234", 4) == 0);
    CHECK("fd_pread past end", __wasi_fd_pread(fd, &riov, 1, 1000, &n), E_SUCCESS);
    CHECK("fd_pread past end bytes", n, 0);
    __wasi_ciovec_t wiov = {(const uint8_t *)"AB", 2};
    CHECK("fd_pwrite at 4", __wasi_fd_pwrite(fd, &wiov, 1, 4, &n), E_SUCCESS);
    CHECK("fd_pwrite bytes", n, 2);
    CHECK("fd_pwrite at 12 (hole)", __wasi_fd_pwrite(fd, &wiov, 1, 12, &n), E_SUCCESS);
    CHECK("fd_tell after pwrite", __wasi_fd_tell(fd, &pos), E_SUCCESS);
    CHECK("position still 7", pos, 7);

    __wasi_filestat_t fs;
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("filetype regular", fs.filetype, FT_REG);
    CHECK("size with hole", fs.size, 14);
    CHECK("nlink", fs.nlink, 1);
    CHECK("fd_pread whole", __wasi_fd_pread(fd, &(__wasi_iovec_t){(uint8_t *)buf, 64}, 1, 0, &n),
          E_SUCCESS);
    CHECK("whole size", n, 14);
    CHECK_TRUE("whole content", memcmp(buf, "0123AB6789\0\0AB", 14) == 0);

    CHECK("fd_filestat_set_size 5", __wasi_fd_filestat_set_size(fd, 5), E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("size after truncate", fs.size, 5);
    CHECK("fd_filestat_set_size 100", __wasi_fd_filestat_set_size(fd, 100), E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("size after extend", fs.size, 100);
    CHECK_IN("fd_allocate inside", __wasi_fd_allocate(fd, 0, 10), E_SUCCESS, E_NOTSUP);
    CHECK("fd_advise normal", __wasi_fd_advise(fd, 0, 10, __WASI_ADVICE_NORMAL), E_SUCCESS);
    CHECK("fd_advise dontneed", __wasi_fd_advise(fd, 0, 0, __WASI_ADVICE_DONTNEED), E_SUCCESS);
    CHECK("fd_datasync", __wasi_fd_datasync(fd), E_SUCCESS);
    CHECK("fd_sync", __wasi_fd_sync(fd), E_SUCCESS);

    /* times: exact nanoseconds round-trip, then "now" */
    const __wasi_timestamp_t T1 = 1000000000123456789ull, T2 = 1500000000987654321ull;
    CHECK("fd_filestat_set_times explicit",
          __wasi_fd_filestat_set_times(fd, T1, T2, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM),
          E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("atim", fs.atim, T1);
    CHECK("mtim", fs.mtim, T2);
    CHECK("fd_filestat_set_times mtim now",
          __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW), E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("atim kept", fs.atim, T1);
    CHECK_TRUE("mtim now is recent", fs.mtim > 1577836800ull * 1000000000ull);
    CHECK("set_times atim and atim_now together",
          __wasi_fd_filestat_set_times(fd, T1, 0, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW),
          E_INVAL);

    /* fdstat, flags, rights */
    __wasi_fdstat_t st;
    CHECK("fd_fdstat_get", __wasi_fd_fdstat_get(fd, &st), E_SUCCESS);
    CHECK("fdstat filetype", st.fs_filetype, FT_REG);
    CHECK("fdstat flags", st.fs_flags, 0);
    CHECK_TRUE("has read right", (st.fs_rights_base & __WASI_RIGHTS_FD_READ) != 0);
    CHECK_TRUE("has write right", (st.fs_rights_base & __WASI_RIGHTS_FD_WRITE) != 0);
    CHECK("fd_fdstat_set_flags append", __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_APPEND),
          E_SUCCESS);
    CHECK("fd_fdstat_get", __wasi_fd_fdstat_get(fd, &st), E_SUCCESS);
    CHECK("fdstat flags append", st.fs_flags, __WASI_FDFLAGS_APPEND);
    CHECK("fd_seek 0", __wasi_fd_seek(fd, 0, __WASI_WHENCE_SET, &pos), E_SUCCESS);
    CHECK("append write", write_all(fd, "Z", 1), E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(fd, &fs), E_SUCCESS);
    CHECK("append went to the end", fs.size, 101);
    CHECK("fd_fdstat_set_flags 0", __wasi_fd_fdstat_set_flags(fd, 0), E_SUCCESS);

    /* renumber: the target is replaced, the source goes away */
    __wasi_fd_t fd2 = open_at(PREOPEN, "hello.txt", 0, 0, &e);
    CHECK("open hello.txt", e, E_SUCCESS);
    CHECK("fd_renumber", __wasi_fd_renumber(fd2, fd), E_SUCCESS);
    CHECK("fd_read via renumbered fd", read_some(fd, buf, sizeof buf, &n), E_SUCCESS);
    CHECK("renumbered fd reads hello.txt", n, 12);
    CHECK("old fd is gone", __wasi_fd_fdstat_get(fd2, &st), E_BADF);
    CHECK("fd_renumber from a closed fd", __wasi_fd_renumber(fd2, fd), E_BADF);
    CHECK("fd_renumber to a closed fd", __wasi_fd_renumber(fd, 200), E_BADF);
    CHECK("fd_renumber to itself", __wasi_fd_renumber(fd, fd), E_SUCCESS);

    /* opening flags */
    __wasi_fd_t t = open_at(PREOPEN, "hello.txt", __WASI_OFLAGS_TRUNC, 0, &e);
    CHECK("open trunc", e, E_SUCCESS);
    CHECK("fd_filestat_get", __wasi_fd_filestat_get(t, &fs), E_SUCCESS);
    CHECK("truncated", fs.size, 0);
    CHECK("fd_close", __wasi_fd_close(t), E_SUCCESS);
    CHECK("fd_close twice", __wasi_fd_close(t), E_BADF);
    CHECK("fd_filestat_get closed", __wasi_fd_filestat_get(t, &fs), E_BADF);
    open_at(PREOPEN, "missing.txt", 0, 0, &e);
    CHECK("open missing", e, E_NOENT);
    open_at(PREOPEN, "sub/a.txt", __WASI_OFLAGS_DIRECTORY, 0, &e);
    CHECK("open file with DIRECTORY", e, E_NOTDIR);
    open_at(PREOPEN, "sub/a.txt/", 0, 0, &e);
    CHECK_IN("open file with trailing slash", e, E_NOTDIR, E_NOENT);
    open_at(PREOPEN, "nodir/x.txt", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK("create in a missing dir", e, E_NOENT);
    open_at(PREOPEN, "sub", 0, 0, &e);
    CHECK("open a dir with the write right", e, E_ISDIR);
    __wasi_fd_t d = (__wasi_fd_t)-1;
    e = __wasi_path_open(PREOPEN, 0, "sub", 0, __WASI_RIGHTS_FD_READ, 0, 0, &d);
    CHECK("open a dir read-only without DIRECTORY", e, E_SUCCESS);
    CHECK_IN("fd_read on a dir", read_some(d, buf, sizeof buf, &n), E_ISDIR, E_BADF);
    CHECK("fd_write on a dir", write_all(d, "x", 1), E_BADF);
    CHECK("fd_close dir", __wasi_fd_close(d), E_SUCCESS);

    /* rights: a read-only open cannot write */
    __wasi_fd_t ro = (__wasi_fd_t)-1;
    e = __wasi_path_open(PREOPEN, 0, "sub/a.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &ro);
    CHECK("open read-only", e, E_SUCCESS);
    CHECK_IN("write on a read-only fd", write_all(ro, "x", 1), E_BADF, E_NOTCAPABLE);
    CHECK("read on a read-only fd", read_some(ro, buf, sizeof buf, &n), E_SUCCESS);
    CHECK("read-only fd read bytes", n, 2);
    CHECK("fd_close ro", __wasi_fd_close(ro), E_SUCCESS);
    __wasi_fd_t wo = (__wasi_fd_t)-1;
    e = __wasi_path_open(PREOPEN, 0, "sub/b.txt", 0, __WASI_RIGHTS_FD_WRITE, 0, 0, &wo);
    CHECK("open write-only", e, E_SUCCESS);
    CHECK_IN("read on a write-only fd", read_some(wo, buf, sizeof buf, &n), E_BADF, E_NOTCAPABLE);
    CHECK("fd_close wo", __wasi_fd_close(wo), E_SUCCESS);
    return finish();
}
