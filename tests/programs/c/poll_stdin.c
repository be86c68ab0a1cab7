/* poll_oneoff on a stdin pipe that is open but empty: the clock must win; once the
 * test writes a line, fd_read must win. Prints "waiting" when it wants the line. */
#include "wasitest.h"

int main(void) {
    __wasi_subscription_t subs[2];
    __wasi_event_t ev[2];
    __wasi_size_t n = 0;
    memset(subs, 0, sizeof subs);
    subs[0].userdata = 1;
    subs[0].u.tag = __WASI_EVENTTYPE_FD_READ;
    subs[0].u.u.fd_read.file_descriptor = 0;
    subs[1].userdata = 2;
    subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
    subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    subs[1].u.u.clock.timeout = 50000000ull; /* 50 ms */
    CHECK("poll empty stdin", __wasi_poll_oneoff(subs, ev, 2, &n), E_SUCCESS);
    CHECK("empty stdin: events", n, 1);
    CHECK("empty stdin: the clock fired", ev[0].userdata, 2);
    printf("waiting\n");
    fflush(stdout);
    subs[1].u.u.clock.timeout = 20000000000ull; /* 20 s */
    CHECK("poll stdin with data", __wasi_poll_oneoff(subs, ev, 2, &n), E_SUCCESS);
    CHECK("stdin with data: events", n, 1);
    CHECK("stdin with data: userdata", ev[0].userdata, 1);
    char buf[16];
    __wasi_size_t got = 0;
    CHECK("read the line", read_some(0, buf, sizeof buf, &got), E_SUCCESS);
    CHECK("line length", got, 3);
    return finish();
}
