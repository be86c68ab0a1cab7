/*
 * http (C): a small HTTP/1.1 server for a Keep.
 *
 * The Keep opens the listening socket named "http" in the config (fd = its
 * position in [[files]], found through FD_NAMES), and with prot = "tls" it
 * also terminates TLS: this program only ever sees plain HTTP on the accepted
 * sockets. Under a runtime that exports no FD_NAMES (wasmtime run -S
 * tcplisten=...), the listener is fd 3.
 *
 * One thread, poll() over the listener and every client: partial reads,
 * pipelined requests, keep-alive (HTTP/1.1 default), "Connection: close",
 * request bodies (Content-Length), idle timeouts and a lingering close (input
 * that arrives after the last response is read and dropped, so that the close
 * does not reset the connection under the client) are handled. Routes:
 *   GET|HEAD /            the page
 *   GET|HEAD /index.html  the page
 *   GET|HEAD /health      "ok"
 *   anything else         404 (or 405 for other methods, 400 if malformed)
 * Each request is logged to stdout as "<client> <METHOD> <path> -> <status>".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_NAME "http"
#define MAX_CLIENTS 64
#define IN_SIZE 8192              /* request line + headers must fit */
#define OUT_SIZE 16384            /* responses queued for one client */
#define IDLE_SECONDS 30           /* a silent keep-alive connection is closed */
#define MAX_BODY (1024 * 1024)    /* request bodies are read and discarded */
#define DRAIN_SECONDS 2           /* lingering close: how long unread input is discarded */

static const char PAGE[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head><meta charset=\"utf-8\"><title>Donjon Keep</title></head>\n"
    "<body>\n"
    "<h1>Hello from a Donjon Keep</h1>\n"
    "<p>This page was served by a WebAssembly workload. The Keep terminated TLS\n"
    "with a certificate that only an attested Keep can get; the workload itself\n"
    "speaks plain HTTP.</p>\n"
    "</body>\n"
    "</html>\n";

struct client {
    int fd;                 /* -1 when the slot is free */
    unsigned id;            /* client number, for the log */
    char in[IN_SIZE];
    size_t in_len;
    char out[OUT_SIZE];
    size_t out_len;
    size_t out_sent;
    size_t body_left;       /* bytes of a request body still to discard */
    int closing;            /* close once the output is sent */
    int draining;           /* output sent and shut down: discard input until EOF */
    time_t last_active;
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

static void log_line(const char *fmt, unsigned id, const char *a, const char *b, int status) {
    printf(fmt, id, a, b, status);
    fflush(stdout);
}

static void drop(struct client *c) {
    close(c->fd);
    c->fd = -1;
}

/* Queues bytes for the client; a response that cannot fit closes the connection. */
static int queue(struct client *c, const char *data, size_t len) {
    if (c->out_len + len > sizeof c->out) {
        c->closing = 1;
        return -1;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

#define HEADER_SIZE 512
/* Room for the largest response: requests wait while less than this is free. */
#define MAX_RESPONSE (HEADER_SIZE + sizeof PAGE)

static void respond(struct client *c, int status, const char *reason, const char *type,
                    const char *body, size_t body_len, int head_only) {
    char header[HEADER_SIZE];
    int n = snprintf(header, sizeof header,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: donjon-example-http\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: %s\r\n"
                     "\r\n",
                     status, reason, type, body_len, c->closing ? "close" : "keep-alive");
    if (head_only) {
        body_len = 0;
    }
    if (c->out_len + (size_t)n + body_len > sizeof c->out) {
        c->closing = 1;  /* cannot happen: process_input waits for MAX_RESPONSE bytes of room */
        return;
    }
    queue(c, header, (size_t)n);
    queue(c, body, body_len);
}

static void respond_text(struct client *c, int status, const char *reason, int head_only) {
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
    respond(c, status, reason, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

/* The value of header `name` in the header block, copied into `value`; 0 if absent. */
static int header_value(const char *headers, const char *name, char *value, size_t size) {
    size_t name_len = strlen(name);
    for (const char *line = headers; line != NULL && *line != '\0';) {
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL || eol == line) {
            return 0;
        }
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            size_t len = (size_t)(eol - v);
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
                len--;
            }
            if (len >= size) {
                len = size - 1;
            }
            memcpy(value, v, len);
            value[len] = '\0';
            return 1;
        }
        line = eol + 2;
    }
    return 0;
}

/* Handles one complete request head (NUL-terminated, ending in CRLF CRLF). */
static void handle(struct client *c, char *head) {
    char method[16], path[1024], version[16], value[64];
    char *line_end = strstr(head, "\r\n");
    *line_end = '\0';
    const char *headers = line_end + 2;
    if (sscanf(head, "%15s %1023s %15s", method, path, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        c->closing = 1;
        respond_text(c, 400, "Bad Request", 0);
        log_line("%u %s %s -> %d\n", c->id, "-", "(malformed)", 400);
        return;
    }
    int http10 = strcmp(version, "HTTP/1.0") == 0;
    if (header_value(headers, "Connection", value, sizeof value)) {
        if (strcasecmp(value, "close") == 0) {
            c->closing = 1;
        } else if (strcasecmp(value, "keep-alive") != 0) {
            c->closing = c->closing || http10;
        }
    } else if (http10) {
        c->closing = 1;
    }
    if (header_value(headers, "Transfer-Encoding", value, sizeof value)) {
        c->closing = 1;  /* chunked bodies are not supported: answer, then hang up */
        respond_text(c, 501, "Not Implemented", 0);
        log_line("%u %s %s -> %d\n", c->id, method, path, 501);
        return;
    }
    if (header_value(headers, "Content-Length", value, sizeof value)) {
        char *end;
        errno = 0;
        unsigned long length = strtoul(value, &end, 10);
        if (errno != 0 || *end != '\0' || value[0] < '0' || value[0] > '9' ||
            length > MAX_BODY) {
            c->closing = 1;
            respond_text(c, 413, "Content Too Large", 0);
            log_line("%u %s %s -> %d\n", c->id, method, path, 413);
            return;
        }
        c->body_left = length;
    }
    int head_only = strcmp(method, "HEAD") == 0;
    char route[sizeof path];
    strcpy(route, path);
    route[strcspn(route, "?#")] = '\0';  /* the query does not choose the page */
    int status;
    if (strcmp(method, "GET") != 0 && !head_only) {
        status = 405;
        respond_text(c, status, "Method Not Allowed", 0);
    } else if (strcmp(route, "/") == 0 || strcmp(route, "/index.html") == 0) {
        status = 200;
        respond(c, status, "OK", "text/html; charset=utf-8", PAGE, sizeof PAGE - 1, head_only);
    } else if (strcmp(route, "/health") == 0) {
        status = 200;
        respond(c, status, "OK", "text/plain; charset=utf-8", "ok\n", 3, head_only);
    } else {
        status = 404;
        respond_text(c, status, "Not Found", head_only);
    }
    log_line("%u %s %s -> %d\n", c->id, method, path, status);
}

/* Consumes whatever complete requests (and bodies) are buffered. */
static void process_input(struct client *c) {
    /* Pipelined requests are answered as output room allows; on_writable resumes them. */
    while (!c->closing && sizeof c->out - c->out_len >= MAX_RESPONSE) {
        if (c->body_left > 0) {
            size_t skip = c->body_left < c->in_len ? c->body_left : c->in_len;
            memmove(c->in, c->in + skip, c->in_len - skip);
            c->in_len -= skip;
            c->body_left -= skip;
            if (c->body_left > 0) {
                return;
            }
        }
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (end == NULL) {
            if (c->in_len >= sizeof c->in - 1) {
                c->closing = 1;
                respond_text(c, 431, "Request Header Fields Too Large", 0);
                log_line("%u %s %s -> %d\n", c->id, "-", "(too large)", 431);
            } else if (memchr(c->in, '\0', c->in_len) != NULL) {
                c->closing = 1;
                respond_text(c, 400, "Bad Request", 0);
                log_line("%u %s %s -> %d\n", c->id, "-", "(NUL byte)", 400);
            }
            return;
        }
        size_t used = (size_t)(end - c->in) + 4;
        end[2] = '\0';  /* keep the last header's CRLF for header_value */
        handle(c, c->in);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
}

/* After the last response: stop sending, but read what the client still sends, so
 * that closing with unread input does not reset the connection (and with it the
 * response the client has not read yet). */
static void finish(struct client *c) {
    if (shutdown(c->fd, SHUT_WR) != 0) {
        drop(c);
        return;
    }
    c->draining = 1;
    c->last_active = time(NULL);
}

static void on_drain(struct client *c) {
    char scratch[4096];
    ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(c);
    }
}

static void on_readable(struct client *c) {
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
        c->last_active = time(NULL);
        process_input(c);
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(c);  /* the peer hung up, or the connection broke */
    }
}

static void on_writable(struct client *c) {
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            drop(c);
        }
        return;
    }
    c->out_sent += (size_t)n;
    c->last_active = time(NULL);
    if (c->out_sent == c->out_len) {
        c->out_len = c->out_sent = 0;
        if (c->closing) {
            finish(c);
        } else {
            process_input(c);  /* pipelined requests waiting behind a full output buffer */
        }
    }
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
            perror("http: accept");
        }
        return;
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (clients[i].fd < 0) {
            struct client *c = &clients[i];
            memset(c, 0, sizeof *c);
            c->fd = fd;
            c->id = ++*next_id;
            c->last_active = time(NULL);
            return;
        }
    }
    close(fd);  /* cannot happen: the listener is not polled while every slot is taken */
}

int main(void) {
    int listener = find_fd(LISTEN_NAME);
    if (listener < 0) {
        fprintf(stderr, "http: no file named \"%s\" in FD_NAMES; add a [[files]] entry "
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
    printf("http: serving on fd %d\n", listener);
    fflush(stdout);

    unsigned next_id = 0;
    struct pollfd fds[MAX_CLIENTS + 1];
    for (;;) {
        int used = 0;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            fds[i + 1].fd = c->fd;  /* -1 for a free slot: poll() skips it */
            fds[i + 1].events = POLLIN;
            fds[i + 1].revents = 0;
            if (c->fd >= 0) {
                used++;
                if (c->out_len > c->out_sent) {
                    fds[i + 1].events = POLLOUT;  /* no new requests while answering */
                }
            }
        }
        fds[0].fd = used < MAX_CLIENTS ? listener : -1;
        fds[0].events = POLLIN;
        fds[0].revents = 0;

        int ready = poll(fds, MAX_CLIENTS + 1, 1000);
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("http: poll");
            return 1;
        }
        if (fds[0].revents & (POLLERR | POLLNVAL)) {
            fprintf(stderr, "http: the listening socket failed\n");
            return 1;
        }
        time_t now = time(NULL);
        for (int i = 0; i < MAX_CLIENTS; i++) {
            struct client *c = &clients[i];
            short revents = fds[i + 1].revents;
            if (c->fd < 0 || fds[i + 1].fd != c->fd) {
                continue;
            }
            if (revents & POLLNVAL) {
                drop(c);
            } else if (c->draining) {
                if (revents & (POLLIN | POLLHUP | POLLERR)) {
                    on_drain(c);
                } else if (now - c->last_active > DRAIN_SECONDS) {
                    drop(c);
                }
            } else if (revents & POLLOUT) {
                on_writable(c);
            } else if (revents & (POLLIN | POLLHUP | POLLERR)) {
                on_readable(c);
            } else if (now - c->last_active > IDLE_SECONDS) {
                drop(c);
            }
            if (c->fd >= 0 && !c->draining && c->closing && c->out_len == c->out_sent) {
                finish(c);
            }
        }
        if (fds[0].revents & POLLIN) {
            on_accept(listener, &next_id);
        }
    }
}
