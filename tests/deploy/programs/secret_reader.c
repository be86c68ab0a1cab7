/*
 * secret_reader: reads the secrets a Keep hands it, then reports them.
 *
 * Reads /run/secrets/db (fopen + fread, stat for its size, a listing of
 * /run/secrets), $DB_PASSWORD, and the fd named "API_KEY" in FD_NAMES, then
 * tries to write to /run/secrets/db (must fail). With a listener named "web",
 * it serves one connection "db=<...>\n" and exits; else it prints everything,
 * then its arguments (arg1=..., arg2=...) and $MOTD (a value a config may seal).
 * ("writable" is 1 only if a write to the secret file succeeded.)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    static char db[4096];
    size_t n = 0;
    FILE *f = fopen("/run/secrets/db", "r");
    if (f == NULL) {
        printf("open-error=%s\n", strerror(errno));
    } else {
        n = fread(db, 1, sizeof db - 1, f);
        fclose(f);
    }
    db[n] = 0;
    struct stat st;
    long size = stat("/run/secrets/db", &st) == 0 ? (long)st.st_size : -1;
    int wfd = open("/run/secrets/db", O_WRONLY);
    int writable = wfd >= 0 && write(wfd, "x", 1) == 1;
    char listing[512] = "";
    DIR *d = opendir("/run/secrets");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            strncat(listing, e->d_name, sizeof listing - strlen(listing) - 2);
            strcat(listing, ",");
        }
        closedir(d);
    }
    char key[256] = "";
    int kfd = find_fd("API_KEY");
    if (kfd >= 0) {
        ssize_t got = read(kfd, key, sizeof key - 1);
        key[got > 0 ? got : 0] = 0;
    }
    const char *env = getenv("DB_PASSWORD");
    int web = find_fd("web");
    if (web >= 0) {
        int client = accept(web, NULL, NULL);
        if (client < 0) {
            perror("accept");
            return 3;
        }
        char reply[4200];
        int len = snprintf(reply, sizeof reply, "db=%s\n", db);
        write(client, reply, (size_t)len);
        close(client);
        return 0;
    }
    printf("db=%s\nsize=%ld\nwritable=%d\nlisting=%s\napi_key=%s\nenv=%s\n", db, size, writable,
           listing, key, env ? env : "(unset)");
    for (int i = 1; i < argc; i++) printf("arg%d=%s\n", i, argv[i]);
    const char *motd = getenv("MOTD");
    printf("motd=%s\n", motd ? motd : "(unset)");
    return 0;
}
