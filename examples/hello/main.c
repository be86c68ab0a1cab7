/*
 * hello (C): the smallest workload. It greets whoever runs it, by the name in
 * its first argument if there is one, and says how many files the Keep gave it
 * (FD_COUNT, exported by Donjon and Enarx Keeps; absent under a plain runtime).
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    const char *fd_count = getenv("FD_COUNT");
    printf("Hello, %s! Greetings from WebAssembly.\n", who);
    if (fd_count != NULL) {
        printf("The Keep gave me %s files (FD_COUNT).\n", fd_count);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
