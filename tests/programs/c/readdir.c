/* fd_readdir: full listings, resuming from every cookie, tiny and truncating buffers. */
#include <stdlib.h>

#include "wasitest.h"

#define NFILES 40
#define MAXN 64

typedef struct {
    char name[64];
    uint64_t next;
    uint8_t type;
} entry_t;

static int cmp(const void *a, const void *b) {
    return strcmp(((const entry_t *)a)->name, ((const entry_t *)b)->name);
}

/* Read every entry from `cookie` on with a buffer of `bufsize` bytes. */
static int list(__wasi_fd_t fd, uint64_t cookie, size_t bufsize, entry_t *out, int *calls) {
    static uint8_t buf[4096];
    int count = 0;
    *calls = 0;
    for (;;) {
        __wasi_size_t used = 0;
        __wasi_errno_t e = __wasi_fd_readdir(fd, buf, bufsize, cookie, &used);
        (*calls)++;
        if (e != E_SUCCESS) {
            CHECK("fd_readdir", e, E_SUCCESS);
            return -1;
        }
        size_t off = 0, last_complete = 0;
        while (off + sizeof(__wasi_dirent_t) <= used) {
            __wasi_dirent_t d;
            memcpy(&d, buf + off, sizeof d);
            if (off + sizeof d + d.d_namlen > used) break; /* name cut: refetch from cookie */
            if (count < MAXN && d.d_namlen < 64) {
                memcpy(out[count].name, buf + off + sizeof d, d.d_namlen);
                out[count].name[d.d_namlen] = 0;
                out[count].next = d.d_next;
                out[count].type = d.d_type;
            }
            count++;
            cookie = d.d_next;
            off += sizeof d + d.d_namlen;
            last_complete = off;
        }
        if (used < bufsize) return count; /* a short buffer means the end */
        if (last_complete == 0 && bufsize < sizeof(__wasi_dirent_t) + 64) {
            return count; /* caller asked for a buffer too small to make progress */
        }
        if (*calls > 10000) return -2;
    }
}

int main(void) {
    __wasi_errno_t e;
    CHECK("mkdir many", __wasi_path_create_directory(PREOPEN, "many"), E_SUCCESS);
    __wasi_fd_t dir = open_dir(PREOPEN, "many", &e);
    CHECK("open many", e, E_SUCCESS);
    for (int i = 0; i < NFILES; i++) {
        char name[64];
        snprintf(name, sizeof name, "file-%02d-%s", i, i % 3 ? "x" : "a-longer-name");
        __wasi_fd_t f = open_at(dir, name, __WASI_OFLAGS_CREAT, 0, &e);
        if (e != E_SUCCESS) CHECK("create", e, E_SUCCESS);
        else __wasi_fd_close(f);
    }
    CHECK("mkdir many/subdir", __wasi_path_create_directory(dir, "subdir"), E_SUCCESS);

    static entry_t all[MAXN], part[MAXN], small[MAXN];
    int calls = 0;
    int n = list(dir, 0, 4096, all, &calls);
    int files = 0, dirs = 0, dots = 0;
    for (int i = 0; i < n && i < MAXN; i++) {
        if (!strcmp(all[i].name, ".") || !strcmp(all[i].name, "..")) dots++;
        else if (all[i].type == FT_DIR) dirs++;
        else if (all[i].type == FT_REG) files++;
    }
    CHECK("regular files listed", files, NFILES);
    if (n < 2 || n > MAXN) {
        CHECK_TRUE("listing has a sane size", 0);
        return finish();
    }
    CHECK("subdirs listed", dirs, 1);
    printf("dot entries: %d\n", dots);
    CHECK_TRUE("no duplicate cookies", 1);
    for (int i = 0; i + 1 < n && i + 1 < MAXN; i++) {
        if (all[i].next == all[i + 1].next) CHECK_TRUE("cookies distinct", 0);
    }

    /* Resume from the middle: the rest of the listing, exactly. */
    int mid = n / 2;
    int m = list(dir, all[mid - 1].next, 4096, part, &calls);
    CHECK("resume from the middle count", m, n - mid);
    int same = 1;
    for (int i = 0; i < m && mid + i < MAXN; i++) same &= !strcmp(part[i].name, all[mid + i].name);
    CHECK_TRUE("resume gives the same names in the same order", same);

    /* A cookie at the end gives nothing. */
    m = list(dir, all[n - 1].next, 4096, part, &calls);
    CHECK("after the last cookie", m, 0);

    /* A buffer that fits one entry at a time: a truncated entry is refetched by cookie. */
    m = list(dir, 0, sizeof(__wasi_dirent_t) + 30, small, &calls);
    CHECK("small-buffer listing count", m, n);
    CHECK_TRUE("small buffer needed many calls", calls > n / 2);
    qsort(all, (size_t)n, sizeof all[0], cmp);
    qsort(small, (size_t)m, sizeof small[0], cmp);
    same = m == n;
    for (int i = 0; same && i < n; i++) same &= !strcmp(all[i].name, small[i].name);
    CHECK_TRUE("small-buffer listing matches", same);
    for (int i = 0; i < n; i++) printf("entry %s type %u\n", all[i].name, all[i].type);

    /* A buffer too small for a header still says it is full. */
    uint8_t tiny[8];
    __wasi_size_t used = 0;
    CHECK("fd_readdir 8-byte buffer", __wasi_fd_readdir(dir, tiny, sizeof tiny, 0, &used),
          E_SUCCESS);
    CHECK("8-byte buffer filled", used, 8);
    CHECK("fd_readdir 0-byte buffer", __wasi_fd_readdir(dir, tiny, 0, 0, &used), E_SUCCESS);
    CHECK("0-byte buffer used", used, 0);
    CHECK("fd_readdir on a file", __wasi_fd_readdir(1, tiny, sizeof tiny, 0, &used), E_BADF);
    __wasi_fd_t f = open_at(PREOPEN, "hello.txt", 0, 0, &e);
    CHECK_IN("fd_readdir on a regular file", __wasi_fd_readdir(f, tiny, sizeof tiny, 0, &used),
             E_NOTDIR, E_BADF);
    /* The preopen itself can be listed. */
    n = list(PREOPEN, 0, 4096, all, &calls);
    qsort(all, (size_t)(n < MAXN ? n : MAXN), sizeof all[0], cmp);
    for (int i = 0; i < n && i < MAXN; i++) printf("root %s type %u\n", all[i].name, all[i].type);
    return finish();
}
