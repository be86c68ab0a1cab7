/*
 * client: sends argv[1] to the connection named "peer" and prints the reply.
 *
 * The Keep connected (and, with prot = "tls", handshook) before main() runs;
 * this program sees plaintext on the fd that FD_NAMES gives "peer".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int find_fd(const char *name) {
    const char *names = getenv("FD_NAMES");
    if (names == NULL) return -1;
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

int main(int argc, char **argv) {
    const char *msg = argc > 1 ? argv[1] : "hello";
    int fd = find_fd("peer");
    if (fd < 0) {
        fprintf(stderr, "client: no connection named \"peer\"\n");
        return 2;
    }
    size_t len = strlen(msg);
    if (write(fd, msg, len) != (ssize_t)len) {
        perror("client: write");
        return 1;
    }
    char buf[4096];
    size_t have = 0;
    while (have < len && have < sizeof buf - 1) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
    }
    buf[have] = '\0';
    printf("reply: %s\n", buf);
    close(fd);
    return have == len ? 0 : 1;
}
