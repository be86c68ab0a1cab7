/* clock_res_get / clock_time_get for every clock id, and a bad id. */
#include "wasitest.h"

int main(void) {
    static const char *names[] = {"realtime", "monotonic", "process_cputime", "thread_cputime"};
    __wasi_timestamp_t t = 0, res = 0;
    for (uint32_t id = 0; id < 2; id++) {
        char what[64];
        snprintf(what, sizeof what, "clock_res_get %s", names[id]);
        CHECK(what, __wasi_clock_res_get(id, &res), E_SUCCESS);
        snprintf(what, sizeof what, "%s resolution in (0, 1s]", names[id]);
        CHECK_TRUE(what, res > 0 && res <= 1000000000ull);
    }
    /* Realtime is after 2020-01-01 and before 2100-01-01 (ns since the epoch). */
    CHECK("clock_time_get realtime", __wasi_clock_time_get(0, 1, &t), E_SUCCESS);
    CHECK_TRUE("realtime after 2020", t > 1577836800ull * 1000000000ull);
    CHECK_TRUE("realtime before 2100", t < 4102444800ull * 1000000000ull);
    /* Monotonic never goes back, and a busy loop makes it advance. */
    __wasi_timestamp_t m0 = 0, m1 = 0;
    CHECK("clock_time_get monotonic", __wasi_clock_time_get(1, 1, &m0), E_SUCCESS);
    volatile uint64_t x = 0;
    for (int i = 0; i < 2000000; i++) x += (uint64_t)i;
    CHECK("clock_time_get monotonic again", __wasi_clock_time_get(1, 1, &m1), E_SUCCESS);
    CHECK_TRUE("monotonic advances", m1 > m0);
    /* The CPU-time clocks are optional in preview1: either they work or they say so. */
    for (uint32_t id = 2; id < 4; id++) {
        char what[64];
        __wasi_errno_t e = __wasi_clock_time_get(id, 1, &t);
        snprintf(what, sizeof what, "clock_time_get %s", names[id]);
        CHECK_IN(what, e, E_SUCCESS, E_BADF, E_NOTSUP, E_INVAL);
        e = __wasi_clock_res_get(id, &res);
        snprintf(what, sizeof what, "clock_res_get %s", names[id]);
        CHECK_IN(what, e, E_SUCCESS, E_BADF, E_NOTSUP, E_INVAL);
    }
    /* A bad clock id traps in wasmtime: see wat/bad_enum.wat. */
    return finish();
}
