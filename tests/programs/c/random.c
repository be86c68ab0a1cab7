/* random_get: zero length, large buffers, two draws differ. */
#include "wasitest.h"

static uint8_t a[65536], b[65536];

int main(void) {
    CHECK("random_get len 0", __wasi_random_get(a, 0), E_SUCCESS);
    CHECK("random_get 64 KiB", __wasi_random_get(a, sizeof a), E_SUCCESS);
    CHECK("random_get 64 KiB again", __wasi_random_get(b, sizeof b), E_SUCCESS);
    CHECK_TRUE("two draws differ", memcmp(a, b, sizeof a) != 0);
    /* Every byte value should appear in 64 KiB of good randomness (P(miss) ~ 2^-360). */
    int seen[256] = {0};
    for (size_t i = 0; i < sizeof a; i++) seen[a[i]] = 1;
    int distinct = 0;
    for (int i = 0; i < 256; i++) distinct += seen[i];
    CHECK("distinct byte values", distinct, 256);
    /* Tail bytes get written too (no off-by-one at the end of the buffer). */
    memset(b, 0, sizeof b);
    CHECK("random_get 1000", __wasi_random_get(b + 1, 1000), E_SUCCESS);
    int tail_nonzero = 0;
    for (int i = 990; i <= 1000; i++) tail_nonzero |= b[i];
    CHECK_TRUE("tail written", tail_nonzero != 0);
    CHECK("byte before untouched", b[0], 0);
    CHECK("byte after untouched", b[1001], 0);
    return finish();
}
