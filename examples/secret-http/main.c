/*
 * secret-http (C): serves, over the Keep's TLS, a secret the Keep received after
 * attestation.
 *
 * The Keep fetches the secret "db" from its Steward once the Steward has
 * certified it, and shows it to this program as the read-only, in-memory file
 * /run/secrets/db (it never exists on the host's disk). Each HTTP request on
 * the listener named "http" gets a plain-text answer quoting it. A real
 * workload would use the password to reach its database instead of printing
 * it: this is the demo of `donjon demo --deploy`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

int main(void) {
    static char secret[4096];
    FILE *f = fopen("/run/secrets/db", "r");
    if (f == NULL) {
        fprintf(stderr, "secret-http: /run/secrets/db: %s\n", strerror(errno));
        return 2;
    }
    size_t n = fread(secret, 1, sizeof secret - 1, f);
    fclose(f);
    secret[n] = 0;
    while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r')) secret[--n] = 0;
    int lfd = find_fd("http");
    if (lfd < 0) {
        fprintf(stderr, "secret-http: no listener named \"http\" in FD_NAMES\n");
        return 2;
    }
    printf("secret-http: serving on fd %d (secret of %zu bytes)\n", lfd, n);
    fflush(stdout);
    for (;;) {
        int client = accept(lfd, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            perror("accept");
            return 1;
        }
        char request[4096];
        size_t got = 0;
        while (got < sizeof request - 1) {
            ssize_t r = read(client, request + got, sizeof request - 1 - got);
            if (r <= 0) break;
            got += (size_t)r;
            request[got] = 0;
            if (strstr(request, "\r\n\r\n") != NULL) break;
        }
        char body[4200];
        int blen = snprintf(body, sizeof body, "database password from /run/secrets/db: %s\n", secret);
        char head[256];
        int hlen = snprintf(head, sizeof head,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: %d\r\nConnection: close\r\n\r\n",
                            blen);
        write_all(client, head, (size_t)hlen);
        write_all(client, body, (size_t)blen);
        close(client);
        printf("secret-http: answered a request\n");
        fflush(stdout);
    }
}
