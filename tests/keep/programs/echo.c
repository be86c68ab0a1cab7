/*
 * echo: a poll()-driven echo server for Keep tests and benchmarks.
 *
 * Serves the listener named "echo" in FD_NAMES (fd 3 when FD_NAMES is absent,
 * as under `wasmtime run -S tcplisten=...`). Every byte a client sends comes
 * back. With argv[1] = N it exits 0 after N connections have closed, so a test
 * can end the Keep deterministically; without it, it serves forever.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64

static int find_fd(const char *name) {
    const char *names = getenv("FD_NAMES");
    if (names == NULL) return 3;
    size_t want = strlen(name);
    int fd = 0;
    for (const char *p = names;; fd++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == want && strncmp(p, name, len) == 0) return fd;
        if (end == NULL) return -1;
        p = end + 1;
    }
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    long limit = argc > 1 ? atol(argv[1]) : 0;
    int lfd = find_fd("echo");
    if (lfd < 0) {
        fprintf(stderr, "echo: no listener named \"echo\" in FD_NAMES\n");
        return 2;
    }
    static char buf[65536];
    struct pollfd fds[MAX_CLIENTS + 1];
    int n = 1;
    long closed = 0;
    fds[0].fd = lfd;
    fds[0].events = POLLIN;
    printf("echo: serving fd %d\n", lfd);
    fflush(stdout);
    for (;;) {
        for (int i = 0; i < n; i++) fds[i].revents = 0;
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            perror("echo: poll");
            return 1;
        }
        if ((fds[0].revents & POLLIN) && n <= MAX_CLIENTS) {
            int c = accept(lfd, NULL, NULL);
            if (c >= 0) {
                fds[n].fd = c;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                n++;
            }
        }
        for (int i = 1; i < n; i++) {
            if (fds[i].revents == 0) continue;
            ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got > 0 && write_all(fds[i].fd, buf, (size_t)got) == 0) continue;
            close(fds[i].fd);
            fds[i] = fds[n - 1];
            n--;
            i--;
            closed++;
            if (limit > 0 && closed >= limit) return 0;
        }
    }
}
