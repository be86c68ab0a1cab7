/* Linear memory grows under the host's feet: every call after a memory.grow must see
 * the new pages (a host that caches a view of memory has to refresh it). */
#include <stdlib.h>

#include "wasitest.h"

int main(void) {
    __wasi_errno_t e;
    size_t start_pages = __builtin_wasm_memory_size(0);
    int bad = 0;
    for (int step = 1; step <= 24; step++) {
        size_t size = (size_t)step << 20; /* 1..24 MiB, each a fresh allocation */
        uint8_t *buf = malloc(size);
        if (!buf) {
            CHECK_TRUE("malloc", 0);
            break;
        }
        memset(buf, (int)step, size);
        __wasi_fd_t f = open_at(PREOPEN, "grow.bin", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, 0, &e);
        /* write the last 4 KiB of the newest block, read it back over its first 4 KiB */
        __wasi_ciovec_t w = {buf + size - 4096, 4096};
        __wasi_size_t n = 0;
        if (e != E_SUCCESS || __wasi_fd_write(f, &w, 1, &n) != E_SUCCESS || n != 4096) bad++;
        memset(buf, 0, 4096);
        __wasi_iovec_t r = {buf, 4096};
        if (__wasi_fd_pread(f, &r, 1, 0, &n) != E_SUCCESS || n != 4096) bad++;
        for (int i = 0; i < 4096; i++) bad += buf[i] != (uint8_t)step;
        /* random_get into the very end of the block */
        if (__wasi_random_get(buf + size - 64, 64) != E_SUCCESS) bad++;
        __wasi_fd_close(f);
        /* keep the block: memory keeps growing */
    }
    CHECK("bad bytes or calls after growth", bad, 0);
    CHECK_TRUE("memory grew", __builtin_wasm_memory_size(0) > start_pages + 100);
    /* the last byte of linear memory is addressable by the host */
    uint8_t *last = (uint8_t *)(__builtin_wasm_memory_size(0) * 65536 - 1);
    CHECK("random_get into the last byte", __wasi_random_get(last, 1), E_SUCCESS);
    __wasi_ciovec_t one = {last, 1};
    __wasi_size_t n = 0;
    __wasi_fd_t f = open_at(PREOPEN, "last.bin", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK("fd_write from the last byte", __wasi_fd_write(f, &one, 1, &n), E_SUCCESS);
    CHECK("wrote 1", n, 1);
    __wasi_fd_close(f);
    CHECK("unlink grow.bin", __wasi_path_unlink_file(PREOPEN, "grow.bin"), E_SUCCESS);
    CHECK("unlink last.bin", __wasi_path_unlink_file(PREOPEN, "last.bin"), E_SUCCESS);
    return finish();
}
