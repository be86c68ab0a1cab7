/*
 * fibonacci (C): prints "fib(N) = F" for each N given as an argument, or, when
 * there are no arguments, for each whitespace-separated N read from stdin.
 *
 * N must be a decimal integer from 0 to 93: fib(93) is the largest Fibonacci
 * number that fits in 64 bits. Anything else stops the program with a one-line
 * error on stderr and exit code 1. The other fibonacci-* examples print
 * byte-for-byte the same output and errors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 93

/* Parses a token of decimal digits no greater than MAX_N; -1 if it is not one. */
static int parse_n(const char *token) {
    int n = 0;
    if (*token == '\0') {
        return -1;
    }
    for (const char *p = token; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        n = n * 10 + (*p - '0');
        if (n > MAX_N) {
            return -1;
        }
    }
    return n;
}

static uint64_t fib(int n) {
    uint64_t a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        uint64_t next = a + b;
        a = b;
        b = next;
    }
    return a;
}

/* Prints one answer; returns 0, or 1 after reporting a bad token. */
static int answer(const char *token) {
    int n = parse_n(token);
    if (n < 0) {
        fprintf(stderr, "fibonacci: invalid input '%s': expected an integer from 0 to %d\n", token,
                MAX_N);
        return 1;
    }
    printf("fib(%d) = %llu\n", n, (unsigned long long)fib(n));
    return 0;
}

static int is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Reads whitespace-separated tokens of any length from stdin. */
static int answer_stdin(void) {
    size_t cap = 32, len = 0;
    char *token = malloc(cap);
    int c;
    if (token == NULL) {
        fputs("fibonacci: out of memory\n", stderr);
        return 1;
    }
    do {
        c = getchar();
        if (c == EOF || is_space(c)) {
            if (len > 0) {
                token[len] = '\0';
                len = 0;
                if (answer(token) != 0) {
                    free(token);
                    return 1;
                }
            }
            continue;
        }
        if (len + 1 == cap) {
            char *bigger = realloc(token, cap * 2);
            if (bigger == NULL) {
                free(token);
                fputs("fibonacci: out of memory\n", stderr);
                return 1;
            }
            token = bigger;
            cap *= 2;
        }
        token[len++] = (char)c;
    } while (c != EOF);
    free(token);
    if (ferror(stdin)) {
        fputs("fibonacci: cannot read stdin\n", stderr);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int status = 0;
    if (argc <= 1) {
        status = answer_stdin();
    } else {
        for (int i = 1; i < argc && status == 0; i++) {
            status = answer(argv[i]);
        }
    }
    if (fflush(stdout) != 0) {
        return 1;
    }
    return status;
}
