/* args_sizes_get/args_get and environ_sizes_get/environ_get, raw.
 * The test runs it as: args_env.wasm alpha "two words" "" ünï
 * with exactly --env FOO=bar --env EMPTY= --env "SPACED=a b=c".
 */
#include <stdlib.h>

#include "wasitest.h"

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    __wasi_size_t argc = 0, argv_len = 0;
    CHECK("args_sizes_get", __wasi_args_sizes_get(&argc, &argv_len), E_SUCCESS);
    CHECK("argc", argc, 5);
    uint8_t *argv[16];
    uint8_t buf[512];
    memset(buf, 0xAA, sizeof buf);
    CHECK("args_get", __wasi_args_get(argv, buf), E_SUCCESS);
    /* argv[0] is the module name, which runtimes spell differently: skip it. */
    size_t arg0 = strlen((char *)argv[0]) + 1;
    /* The rest is exact: lengths include each NUL terminator. */
    CHECK("argv_buf_size minus argv0", argv_len - arg0, 6 + 10 + 1 + 6);
    CHECK_TRUE("argv[1] alpha", strcmp((char *)argv[1], "alpha") == 0);
    CHECK_TRUE("argv[2] two words", strcmp((char *)argv[2], "two words") == 0);
    CHECK_TRUE("argv[3] empty", strcmp((char *)argv[3], "") == 0);
    CHECK_TRUE("argv[4] utf8", strcmp((char *)argv[4], "\xc3\xbcn\xc3\xaf") == 0);
    CHECK("byte after argv buffer untouched", buf[argv_len], 0xAA);
    for (__wasi_size_t i = 1; i < argc; i++) printf("arg %u [%s]\n", (unsigned)i, argv[i]);

    __wasi_size_t envc = 0, env_len = 0;
    CHECK("environ_sizes_get", __wasi_environ_sizes_get(&envc, &env_len), E_SUCCESS);
    CHECK("envc (only the --env vars)", envc, 3);
    CHECK("environ_buf_size", env_len, 8 + 7 + 13);
    uint8_t *env[16];
    uint8_t ebuf[512];
    memset(ebuf, 0xAA, sizeof ebuf);
    CHECK("environ_get", __wasi_environ_get(env, ebuf), E_SUCCESS);
    CHECK("byte after environ buffer untouched", ebuf[env_len], 0xAA);
    if (envc > 16) envc = 16;
    qsort(env, envc, sizeof env[0], cmp);
    for (__wasi_size_t i = 0; i < envc; i++) printf("env [%s]\n", env[i]);
    CHECK_TRUE("getenv FOO", getenv("FOO") && strcmp(getenv("FOO"), "bar") == 0);
    CHECK_TRUE("getenv EMPTY", getenv("EMPTY") && strcmp(getenv("EMPTY"), "") == 0);
    CHECK_TRUE("getenv SPACED", getenv("SPACED") && strcmp(getenv("SPACED"), "a b=c") == 0);
    CHECK_TRUE("no PATH leaked from the host", getenv("PATH") == NULL);
    return finish();
}
