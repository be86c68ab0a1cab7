/* Tiny self-checking harness for the WASI conformance programs.
 *
 * Every check prints one deterministic line: "ok <what> = <value>" or
 * "FAIL <what>: got X want Y". The differential test compares these lines
 * between the reference wasmtime CLI and Donjon, and also fails on any FAIL,
 * so a bug shared by both runtimes is still caught.
 *
 * Errno values are the wasi_snapshot_preview1 spec's numbers, written by hand.
 */
#ifndef WASITEST_H
#define WASITEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

#define E_SUCCESS 0
#define E_2BIG 1
#define E_ACCES 2
#define E_AGAIN 6
#define E_BADF 8
#define E_EXIST 20
#define E_FAULT 21
#define E_INVAL 28
#define E_IO 29
#define E_ISDIR 31
#define E_LOOP 32
#define E_NAMETOOLONG 37
#define E_NOENT 44
#define E_NOSYS 52
#define E_NOTCONN 53
#define E_NOTDIR 54
#define E_NOTEMPTY 55
#define E_NOTSOCK 57
#define E_NOTSUP 58
#define E_PERM 63
#define E_PIPE 64
#define E_RANGE 68
#define E_SPIPE 70
#define E_XDEV 75
#define E_NOTCAPABLE 76

#define FT_UNKNOWN 0
#define FT_BLOCK 1
#define FT_CHAR 2
#define FT_DIR 3
#define FT_REG 4
#define FT_DGRAM 5
#define FT_STREAM 6
#define FT_SYMLINK 7

#define PREOPEN 3 /* the one --dir ROOT::/ preopen */

/* All 30 rights bits that preview1 defines (fd_datasync .. sock_accept); unknown bits trap. */
#define RIGHTS_ALL ((__wasi_rights_t)0x3FFFFFFFull)

static int failures;

static void check_eq(int line, const char *what, long long got, long long want) {
    if (got == want) {
        printf("ok %s = %lld\n", what, got);
    } else {
        printf("FAIL %s: got %lld want %lld (line %d)\n", what, got, want, line);
        failures++;
    }
}

/* got must be one of the n values in want[]; used where the spec allows several errnos. */
static void check_in(int line, const char *what, long long got, int n, const long long *want) {
    for (int i = 0; i < n; i++) {
        if (got == want[i]) {
            /* no value: runtimes may legitimately pick different members of the set */
            printf("ok %s\n", what);
            return;
        }
    }
    printf("FAIL %s: got %lld, not among the %d allowed (line %d)\n", what, got, n, line);
    failures++;
}

static void check_true(int line, const char *what, int cond) {
    if (cond) {
        printf("ok %s\n", what);
    } else {
        printf("FAIL %s (line %d)\n", what, line);
        failures++;
    }
}

#define CHECK(what, got, want) check_eq(__LINE__, what, (long long)(got), (long long)(want))
#define CHECK_TRUE(what, cond) check_true(__LINE__, what, (cond) ? 1 : 0)
#define CHECK_IN(what, got, ...)                                                        \
    do {                                                                                \
        const long long want_[] = {__VA_ARGS__};                                        \
        check_in(__LINE__, what, (long long)(got), (int)(sizeof want_ / sizeof *want_), \
                 want_);                                                                \
    } while (0)

/* No opinion from the spec: print the value so the differential run compares it. */
#define INFO(what, got) printf("info %s = %lld\n", what, (long long)(got))

/* The escape errnos: wasmtime answers PERM; NOTCAPABLE is the preview1 name for it. */
#define CHECK_DENIED(what, got) CHECK_IN(what, got, E_PERM, E_NOTCAPABLE)

static int finish(void) {
    printf("failures %d\n", failures);
    fflush(stdout);
    return failures ? 1 : 0;
}

static __wasi_fd_t open_at(__wasi_fd_t dir, const char *path, __wasi_oflags_t oflags,
                           __wasi_fdflags_t fdflags, __wasi_errno_t *err) {
    __wasi_fd_t fd = (__wasi_fd_t)-1;
    *err = __wasi_path_open(dir, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, path, oflags,
                            RIGHTS_ALL, RIGHTS_ALL, fdflags, &fd);
    return fd;
}

/* Directories refuse FD_WRITE (EISDIR), like POSIX open(O_RDWR) on a directory. */
static __wasi_fd_t open_dir(__wasi_fd_t dir, const char *path, __wasi_errno_t *err) {
    __wasi_fd_t fd = (__wasi_fd_t)-1;
    __wasi_rights_t rights = RIGHTS_ALL & ~(__wasi_rights_t)__WASI_RIGHTS_FD_WRITE;
    *err = __wasi_path_open(dir, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, path, __WASI_OFLAGS_DIRECTORY,
                            rights, RIGHTS_ALL, 0, &fd);
    return fd;
}

static __wasi_errno_t write_all(__wasi_fd_t fd, const void *buf, size_t len) {
    __wasi_ciovec_t iov = {.buf = (const uint8_t *)buf, .buf_len = len};
    __wasi_size_t n = 0;
    __wasi_errno_t e = __wasi_fd_write(fd, &iov, 1, &n);
    if (e == 0 && n != len) return E_IO;
    return e;
}

static __wasi_errno_t read_some(__wasi_fd_t fd, void *buf, size_t len, __wasi_size_t *n) {
    __wasi_iovec_t iov = {.buf = (uint8_t *)buf, .buf_len = len};
    return __wasi_fd_read(fd, &iov, 1, n);
}

#endif
