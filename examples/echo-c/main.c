/* A poll-based TCP echo server for WASI preview1.
 *
 * It serves the listening socket it is given (it cannot open one: preview1 has no
 * socket() or bind()). That is fd 3, or the fd named LISTEN in $FD_NAMES, Enarx's
 * convention for the [[files]] of Donjon.toml. Many clients at once, one poll()
 * loop, no threads. The listener is switched to non-blocking and drained on each
 * wake-up; clients stay blocking and are only read when poll() says so.
 *
 * Usage: main.wasm [MAX_CONNECTIONS]   (exit 0 after that many have closed; 0 = forever)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64

static int listener_fd(void) {
    const char *names = getenv("FD_NAMES");
    if (!names) return 3;
    int fd = 0;
    for (const char *p = names; *p; fd++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 6 && strncmp(p, "LISTEN", 6) == 0) return fd;
        if (!end) break;
        p = end + 1;
    }
    return 3;
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
    long max_conns = argc > 1 ? atol(argv[1]) : 0;
    long accepted = 0, closed = 0;
    unsigned long long bytes = 0;
    int lfd = listener_fd();
    int flags = fcntl(lfd, F_GETFL);
    if (flags < 0 || fcntl(lfd, F_SETFL, flags | O_NONBLOCK) < 0) {
        fprintf(stderr, "echo-c: fd %d is not a usable listener: %s\n", lfd, strerror(errno));
        return 2;
    }
    struct pollfd fds[MAX_CLIENTS + 1];
    fds[0].fd = lfd;
    fds[0].events = POLLIN;
    for (int i = 1; i <= MAX_CLIENTS; i++) {
        fds[i].fd = -1; /* never events == 0: wasi-libc's poll() rejects that with ENOSYS */
        fds[i].events = POLLIN;
    }
    fprintf(stderr, "echo-c: serving fd %d\n", lfd);
    static char buf[65536];
    while (max_conns == 0 || closed < max_conns) {
        int ready = poll(fds, MAX_CLIENTS + 1, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "echo-c: poll: %s\n", strerror(errno));
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            for (;;) { /* drain the backlog; the listener is non-blocking */
                int c = accept(lfd, NULL, NULL);
                if (c < 0) {
                    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                        fprintf(stderr, "echo-c: accept: %s\n", strerror(errno));
                    }
                    break;
                }
                int slot = 1;
                while (slot <= MAX_CLIENTS && fds[slot].fd >= 0) slot++;
                if (slot > MAX_CLIENTS) {
                    close(c); /* full: refuse rather than starve the others */
                    closed++;
                    continue;
                }
                fds[slot].fd = c;
                fds[slot].revents = 0;
                accepted++;
            }
        }
        for (int i = 1; i <= MAX_CLIENTS; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0 && write_all(fds[i].fd, buf, (size_t)n) == 0) {
                bytes += (unsigned long long)n;
                continue;
            }
            close(fds[i].fd); /* EOF, or the peer went away */
            fds[i].fd = -1;
            closed++;
        }
    }
    printf("echo-c: %ld connections, %llu bytes\n", accepted, bytes);
    return 0;
}
