/* Symlink-swap race: the host keeps re-pointing the symlink root/race between race_real
 * (inside) and ../outside while this program opens race/secret.txt and creates files
 * through race/ over and over. A runtime that resolves the path, then opens it by name
 * (TOCTOU), leaks the outside file or writes outside; the test checks outside/ after.
 * argv[1] = rounds. */
#include <stdlib.h>

#include "wasitest.h"

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
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
