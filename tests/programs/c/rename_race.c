/* Symlink-swap race: the host keeps re-pointing the symlink root/race between race_real
 * (inside) and ../outside while this program opens race/secret.txt and creates files
 * through race/ over and over. A runtime that resolves the path, then opens it by name
 * (TOCTOU), leaks the outside file or writes outside; the test checks outside/ after.
 * argv[1] = rounds. argv[2] = "file": race the last component instead: root/race_file
 * flips between a regular file and a symlink to ../outside/secret.txt, and the guest
 * opens it, sets its times and stats it, following links. */
#include <stdlib.h>

#include "wasitest.h"

static int race_file(int rounds) {
    int opened = 0, leaked = 0;
    for (int i = 0; i < rounds; i++) {
        __wasi_fd_t fd = (__wasi_fd_t)-1;
        __wasi_errno_t e = __wasi_path_open(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW,
                                            "race_file", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
        if (e == E_SUCCESS) {
            opened++;
            char buf[64] = {0};
            __wasi_size_t n = 0;
            read_some(fd, buf, sizeof buf - 1, &n);
            if (strstr(buf, "SECRET")) leaked++;
            __wasi_fd_close(fd);
        }
        /* must never touch the outside file's times */
        (void)__wasi_path_filestat_set_times(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW,
                                             "race_file", 1000000000ull, 1000000000ull,
                                             __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM);
        __wasi_filestat_t fs;
        if (__wasi_path_filestat_get(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "race_file",
                                     &fs) == E_SUCCESS &&
            fs.size == 27 /* the secret's size; the inside file has 17 bytes */) {
            leaked++;
        }
    }
    fprintf(stderr, "rounds %d opened %d\n", rounds, opened);
    CHECK("leaks", leaked, 0);
    return finish();
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    if (argc > 2 && strcmp(argv[2], "file") == 0) return race_file(rounds);
    int opened = 0, leaked = 0, denied = 0;
    for (int i = 0; i < rounds; i++) {
        __wasi_fd_t fd = (__wasi_fd_t)-1;
        __wasi_errno_t e = __wasi_path_open(PREOPEN, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW,
                                            "race/secret.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
        if (e != E_SUCCESS) {
            denied++;
            continue;
        }
        opened++;
        char buf[64] = {0};
        __wasi_size_t n = 0;
        read_some(fd, buf, sizeof buf - 1, &n);
        if (strstr(buf, "SECRET")) leaked++;
        __wasi_fd_close(fd);
        /* also create through it: must land in race_real or be refused */
        char name[32];
        snprintf(name, sizeof name, "race/new-%d", i);
        __wasi_fd_t nf = open_at(PREOPEN, name, __WASI_OFLAGS_CREAT, 0, &e);
        if (e == E_SUCCESS) __wasi_fd_close(nf);
    }
    fprintf(stderr, "rounds %d opened %d denied %d\n", rounds, opened, denied);
    CHECK("leaks", leaked, 0);
    CHECK_TRUE("both outcomes seen or the race never fired", opened + denied == rounds);
    return finish();
}
