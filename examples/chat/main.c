/*
 * chat (C): a line-based chat server for a Keep.
 *
 * Clients connect to the listening socket named "chat" (found through
 * FD_NAMES; fd 3 without it). Each client gets a number, from 1 up, and is
 * greeted with "* you are <id>". Every line a client sends is relayed to all
 * the OTHER clients as "<id>: <line>" (the sender does not get its own line
 * back). Joins and leaves are announced to the others as "* <id> joined" and
 * "* <id> left". Lines end in "\n"; a trailing "\r" is dropped, and a line
 * longer than MAX_LINE bytes is relayed in pieces.
 *
 * One thread, poll() over the listener and every client. A client whose
 * unsent backlog exceeds OUT_SIZE is disconnected rather than slowing the
 * others down; client sockets are non-blocking for the same reason. Events are
 * logged to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_NAME "chat"
#define MAX_CLIENTS 64
#define MAX_LINE 1024
#define OUT_SIZE 65536

struct client {
    int fd;  /* -1 when the slot is free */
    unsigned id;
    char in[MAX_LINE];
    size_t in_len;
    char out[OUT_SIZE];
    size_t out_len;
};

static struct client clients[MAX_CLIENTS];

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

static void disconnect(struct client *c);

/* Queues bytes for one client; an overflowing backlog disconnects it. */
static void queue(struct client *c, const char *data, size_t len) {
    if (c->fd < 0) {
        return;
    }
    if (c->out_len + len > sizeof c->out) {
        printf("chat: client %u is too slow, disconnecting it\n", c->id);
        fflush(stdout);
        disconnect(c);
        return;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

/* Sends a formatted line to every client except `except` (NULL: to all). */
static void broadcast(const struct client *except, const char *fmt, ...) {
    char line[MAX_LINE + 32];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (&clients[i] != except && clients[i].fd >= 0) {
            queue(&clients[i], line, len);
        }
    }
}

static void disconnect(struct client *c) {
    if (c->fd < 0) {
        return;
    }
    close(c->fd);
    c->fd = -1;
    printf("chat: client %u left\n", c->id);
    fflush(stdout);
    broadcast(c, "* %u left\n", c->id);
}

/* Relays every complete line in the client's buffer. */
static void relay_lines(struct client *c) {
    size_t start = 0;
    for (size_t i = 0; i < c->in_len; i++) {
        if (c->in[i] == '\n') {
            size_t len = i - start;
            if (len > 0 && c->in[start + len - 1] == '\r') {
                len--;
            }
            broadcast(c, "%u: %.*s\n", c->id, (int)len, c->in + start);
            start = i + 1;
        }
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == sizeof c->in) {  /* a line longer than the buffer: relay this piece */
        broadcast(c, "%u: %.*s\n", c->id, (int)c->in_len, c->in);
        c->in_len = 0;
    }
}

static void on_readable(struct client *c) {
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n > 0) {
        c->in_len += (size_t)n;
        relay_lines(c);
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (c->in_len > 0) {  /* the last line had no newline */
            broadcast(c, "%u: %.*s\n", c->id, (int)c->in_len, c->in);
        }
        disconnect(c);
    }
}

static void on_writable(struct client *c) {
    ssize_t n = write(c->fd, c->out, c->out_len);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            disconnect(c);
        }
        return;
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
}

static void on_accept(int listener, unsigned *next_id) {
    int fd = accept(listener, NULL, NULL);
    if (fd >= 0) {
        /* Non-blocking, so that a client that stops reading cannot stall the others:
         * a write then sends what fits and the rest waits for POLLOUT. */
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0) {
            fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        }
    }
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ECONNABORTED) {
            perror("chat: accept");
        }
        return;
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        struct client *c = &clients[i];
        if (c->fd < 0) {
            memset(c, 0, sizeof *c);
            c->fd = fd;
            c->id = ++*next_id;
            printf("chat: client %u joined\n", c->id);
            fflush(stdout);
            char hello[64];
            int n = snprintf(hello, sizeof hello, "* you are %u\n", c->id);
            queue(c, hello, (size_t)n);
            broadcast(c, "* %u joined\n", c->id);
            return;
        }
    }
    close(fd);  /* cannot happen: the listener is not polled while every slot is taken */
}

int main(void) {
    int listener = find_fd(LISTEN_NAME);
    if (listener < 0) {
        fprintf(stderr, "chat: no file named \"%s\" in FD_NAMES; add a [[files]] entry "
                        "kind = \"listen\", name = \"%s\"\n", LISTEN_NAME, LISTEN_NAME);
        return 1;
    }
    /* Non-blocking accept: a connection that fails its TLS handshake after poll()
     * reported it must not block the loop. Listeners start blocking otherwise. */
    int flags = fcntl(listener, F_GETFL);
    if (flags >= 0) {
        fcntl(listener, F_SETFL, flags | O_NONBLOCK);
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        clients[i].fd = -1;
    }
    printf("chat: serving on fd %d\n", listener);
    fflush(stdout);

    unsigned next_id = 0;
    struct pollfd fds[MAX_CLIENTS + 1];
    for (;;) {
        int used = 0;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            fds[i + 1].fd = c->fd;  /* -1 for a free slot: poll() skips it */
            fds[i + 1].events = (short)(POLLIN | (c->out_len > 0 ? POLLOUT : 0));
            fds[i + 1].revents = 0;
            used += c->fd >= 0;
        }
        fds[0].fd = used < MAX_CLIENTS ? listener : -1;
        fds[0].events = POLLIN;
        fds[0].revents = 0;

        if (poll(fds, MAX_CLIENTS + 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("chat: poll");
            return 1;
        }
        if (fds[0].revents & (POLLERR | POLLNVAL)) {
            fprintf(stderr, "chat: the listening socket failed\n");
            return 1;
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            short revents = fds[i + 1].revents;
            if (c->fd < 0 || fds[i + 1].fd != c->fd) {
                continue;  /* freed (or reused) during this round */
            }
            if (revents & POLLNVAL) {
                disconnect(c);
                continue;
            }
            if (revents & POLLOUT) {
                on_writable(c);
            }
            if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
                on_readable(c);
            }
        }
        if (fds[0].revents & POLLIN) {
            on_accept(listener, &next_id);
        }
    }
}
