/* Compute-bound benchmark: integer mixing with no host calls in the loop.
 * Times itself with clock_time_get(monotonic), so process start is excluded.
 * argv[1] = iterations in millions. Prints the result to stdout, "ns=<n>" to stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <wasi/api.h>

static uint64_t now(void) {
    __wasi_timestamp_t t = 0;
    (void)__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t);
    return t;
}

int main(int argc, char **argv) {
    uint64_t millions = argc > 1 ? strtoull(argv[1], NULL, 10) : 200;
    uint64_t x = 0x9E3779B97F4A7C15ull, acc = 0;
    uint32_t table[256];
    for (int i = 0; i < 256; i++) table[i] = (uint32_t)(i * 2654435761u);
    uint64_t t0 = now();
    for (uint64_t i = 0; i < millions * 1000000ull; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += table[x & 255] ^ (uint32_t)(x >> 32);
        acc = (acc << 1) | (acc >> 63);
    }
    uint64_t t1 = now();
    printf("result %llu\n", (unsigned long long)acc);
    fprintf(stderr, "ns=%llu\n", (unsigned long long)(t1 - t0));
    return 0;
}
