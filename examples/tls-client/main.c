/*
 * tls-client (C): one Keep talking to another over TLS.
 *
 * WASI preview1 has no connect(): the Keep opens the connection named
 * "server" in its config ([[files]] kind = "connect", prot = "tls") before the
 * workload starts, checks the peer's certificate, and hands the workload the
 * plain byte stream (found through FD_NAMES; fd 3 without it).
 *
 * This program sends one HTTP/1.1 request with "Connection: close" and copies
 * the whole reply to stdout. Arguments: [PATH [HOST]] (default "/" and
 * "localhost"; HOST is the request's Host header). It exits 0 when a reply
 * arrived, 1 otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_NAME "server"

/* The fd of the entry called `name` in FD_NAMES, fd 3 without FD_NAMES, or -1. */
static int find_fd(const char *name) {
    const char *names = getenv("FD_NAMES");
    if (names == NULL) {
        return 3;
    }
    size_t want = strlen(name);
    int fd = 0;
    for (const char *p = names;; fd++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == want && strncmp(p, name, len) == 0) {
            return fd;
        }
        if (end == NULL) {
            return -1;
        }
        p = end + 1;
    }
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/";
    const char *host = argc > 2 ? argv[2] : "localhost";
    int fd = find_fd(CONNECT_NAME);
    if (fd < 0) {
        fprintf(stderr, "tls-client: no file named \"%s\" in FD_NAMES; add a [[files]] entry "
                        "kind = \"connect\", name = \"%s\"\n", CONNECT_NAME, CONNECT_NAME);
        return 1;
    }
    if (path[0] != '/' || strpbrk(path, " \r\n") != NULL || strpbrk(host, " \r\n") != NULL) {
        fprintf(stderr, "tls-client: the path must start with '/', and neither the path nor "
                        "the host may contain spaces or line breaks\n");
        return 1;
    }

    char request[2048];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\n"
                       "Host: %s\r\n"
                       "User-Agent: donjon-example-tls-client\r\n"
                       "Accept: */*\r\n"
                       "Connection: close\r\n"
                       "\r\n",
                       path, host);
    if (len < 0 || (size_t)len >= sizeof request) {
        fprintf(stderr, "tls-client: the request is too long\n");
        return 1;
    }
    if (write_all(fd, request, (size_t)len) != 0) {
        perror("tls-client: sending the request");
        return 1;
    }

    char buf[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            break;  /* the server closed the connection: the reply is complete */
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("tls-client: reading the reply");
            return 1;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            perror("tls-client: writing to stdout");
            return 1;
        }
        total += (size_t)n;
    }
    close(fd);
    if (fflush(stdout) != 0) {
        perror("tls-client: writing to stdout");
        return 1;
    }
    if (total == 0) {
        fprintf(stderr, "tls-client: the server closed the connection without a reply\n");
        return 1;
    }
    return 0;
}
