/*
 * ping: the client side of a Keep-to-Keep test. Finds the stream named "server"
 * in FD_NAMES (the Keep has already connected it over TLS), sends one line and
 * prints the reply. Exit 0 only when a reply arrived.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int find_fd(const char *want) {
    const char *names = getenv("FD_NAMES");
    int fd = 0;
    size_t len = strlen(want);
    for (const char *p = names; p && *p; fd++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, want, len) == 0) return fd;
        if (!end) break;
        p = end + 1;
    }
    return -1;
}

int main(void) {
    int fd = find_fd("server");
    if (fd < 0) {
        fprintf(stderr, "ping: no stream named server in FD_NAMES\n");
        return 2;
    }
    static const char msg[] = "ping from the client Keep\n";
    if (write(fd, msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1)) {
        perror("ping: write");
        return 1;
    }
    char buf[256];
    size_t got = 0;
    while (got < sizeof msg - 1) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    printf("reply: %s", buf);
    return got > 0 ? 0 : 1;
}
