/* Escape attempts from the preopen: "..", absolute paths, symlinks out (direct, chained,
 * through a directory link), loops, and writes through all of them. None may reach
 * ../outside/secret.txt; the test also checks the outside tree is unchanged. */
#include "wasitest.h"

static const char SECRET[] = "SECRET";

/* Open and read a path; report only the errno, and fail loudly if the secret leaks. */
static __wasi_errno_t try_read(const char *path, __wasi_lookupflags_t follow) {
    __wasi_fd_t fd = (__wasi_fd_t)-1;
    __wasi_errno_t e = __wasi_path_open(PREOPEN, follow, path, 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    if (e != E_SUCCESS) return e;
    char buf[64] = {0};
    __wasi_size_t n = 0;
    read_some(fd, buf, sizeof buf - 1, &n);
    __wasi_fd_close(fd);
    if (strstr(buf, SECRET)) {
        printf("FAIL LEAK: read the outside secret through %s\n", path);
        failures++;
    }
    return e;
}

#define FOLLOW __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW

int main(void) {
    __wasi_filestat_t fs;
    __wasi_errno_t e;
    /* dot-dot */
    CHECK_DENIED("open ..", try_read("..", FOLLOW));
    CHECK_DENIED("open ../outside/secret.txt", try_read("../outside/secret.txt", FOLLOW));
    CHECK_DENIED("open sub/../../outside/secret.txt", try_read("sub/../../outside/secret.txt", FOLLOW));
    CHECK_DENIED("open sub/../sub/../../outside", try_read("sub/../sub/../../outside", FOLLOW));
    CHECK("open sub/../hello.txt stays inside", try_read("sub/../hello.txt", FOLLOW), E_SUCCESS);
    CHECK("open ./sub/./a.txt", try_read("./sub/./a.txt", FOLLOW), E_SUCCESS);
    CHECK_DENIED("filestat ..", __wasi_path_filestat_get(PREOPEN, 0, "..", &fs));
    /* absolute paths are not relative to the preopen */
    CHECK_DENIED("open /etc/passwd", try_read("/etc/passwd", FOLLOW));
    CHECK_DENIED("open /hello.txt", try_read("/hello.txt", FOLLOW));
    CHECK_DENIED("filestat /", __wasi_path_filestat_get(PREOPEN, 0, "/", &fs));
    /* symlinks that point out */
    CHECK_DENIED("follow link_abs_out", try_read("link_abs_out", FOLLOW));
    CHECK_DENIED("follow link_up_out", try_read("link_up_out", FOLLOW));
    CHECK_DENIED("follow chain1 -> chain2 -> sub/../link_up_out", try_read("chain1", FOLLOW));
    CHECK_DENIED("through link_dir_out/secret.txt", try_read("link_dir_out/secret.txt", FOLLOW));
    CHECK_DENIED("through link_dir_out/secret.txt nofollow", try_read("link_dir_out/secret.txt", 0));
    CHECK_DENIED("filestat follow link_up_out",
                 __wasi_path_filestat_get(PREOPEN, FOLLOW, "link_up_out", &fs));
    CHECK("filestat nofollow link_up_out (the link itself is inside)",
          __wasi_path_filestat_get(PREOPEN, 0, "link_up_out", &fs), E_SUCCESS);
    CHECK("it is a symlink", fs.filetype, FT_SYMLINK);
    /* symlinks that stay in */
    CHECK("follow chain_in1 -> chain_in2 -> sub/a.txt", try_read("chain_in1", FOLLOW), E_SUCCESS);
    CHECK("through link_dir/a.txt", try_read("link_dir/a.txt", FOLLOW), E_SUCCESS);
    /* an absolute target is refused even when it names a file inside the root */
    CHECK_DENIED("follow link_abs_in", try_read("link_abs_in", FOLLOW));
    /* out and back in is still out */
    CHECK_DENIED("link_parent/root/hello.txt", try_read("link_parent/root/hello.txt", FOLLOW));
    CHECK_DENIED("sub/../../root/hello.txt", try_read("sub/../../root/hello.txt", FOLLOW));
    /* ".." after a symlink is physical (POSIX), not lexical: link_deep -> sub/inner */
    CHECK("link_deep/../a.txt is sub/a.txt", try_read("link_deep/../a.txt", FOLLOW), E_SUCCESS);
    CHECK("link_deep/../../hello.txt", try_read("link_deep/../../hello.txt", FOLLOW), E_SUCCESS);
    /* loops */
    CHECK("follow loop1", try_read("loop1", FOLLOW), E_LOOP);
    CHECK("follow self_loop", try_read("self_loop", FOLLOW), E_LOOP);
    CHECK("through loop1/x", try_read("loop1/x", FOLLOW), E_LOOP);
    /* writes and creations through every route out */
    __wasi_fd_t fd = open_at(PREOPEN, "../outside/new.txt", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK_DENIED("create ../outside/new.txt", e);
    fd = open_at(PREOPEN, "link_dir_out/new.txt", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK_DENIED("create link_dir_out/new.txt", e);
    fd = open_at(PREOPEN, "link_up_out", __WASI_OFLAGS_TRUNC, 0, &e);
    CHECK_DENIED("truncate through link_up_out", e);
    fd = open_at(PREOPEN, "dangling", __WASI_OFLAGS_CREAT, 0, &e);
    CHECK_IN("create through a dangling link", e, E_SUCCESS, E_NOENT, E_LOOP, E_PERM,
             E_NOTCAPABLE, E_EXIST);
    if (e == E_SUCCESS) __wasi_fd_close(fd);
    CHECK_DENIED("mkdir ../escape", __wasi_path_create_directory(PREOPEN, "../escape"));
    CHECK_DENIED("mkdir link_dir_out/escape",
                 __wasi_path_create_directory(PREOPEN, "link_dir_out/escape"));
    CHECK_DENIED("unlink ../outside/secret.txt",
                 __wasi_path_unlink_file(PREOPEN, "../outside/secret.txt"));
    CHECK_DENIED("unlink link_dir_out/secret.txt",
                 __wasi_path_unlink_file(PREOPEN, "link_dir_out/secret.txt"));
    CHECK_DENIED("rename hello.txt -> ../outside/x",
                 __wasi_path_rename(PREOPEN, "hello.txt", PREOPEN, "../outside/x"));
    CHECK_DENIED("rename ../outside/secret.txt -> stolen",
                 __wasi_path_rename(PREOPEN, "../outside/secret.txt", PREOPEN, "stolen"));
    CHECK_DENIED("rename link_dir_out/secret.txt -> stolen",
                 __wasi_path_rename(PREOPEN, "link_dir_out/secret.txt", PREOPEN, "stolen"));
    CHECK_DENIED("link ../outside/secret.txt -> stolen",
                 __wasi_path_link(PREOPEN, 0, "../outside/secret.txt", PREOPEN, "stolen"));
    /* wasmtime does not implement SYMLINK_FOLLOW for path_link: INVAL */
    CHECK_IN("link follow link_up_out -> stolen",
             __wasi_path_link(PREOPEN, FOLLOW, "link_up_out", PREOPEN, "stolen"), E_PERM,
             E_NOTCAPABLE, E_INVAL);
    CHECK_DENIED("link hello.txt -> ../outside/x",
                 __wasi_path_link(PREOPEN, 0, "hello.txt", PREOPEN, "../outside/x"));
    CHECK_DENIED("symlink at ../outside/x", __wasi_path_symlink("hello.txt", PREOPEN, "../outside/x"));
    CHECK_DENIED("rmdir ..", __wasi_path_remove_directory(PREOPEN, ".."));
    CHECK_DENIED("set times through link_up_out",
                 __wasi_path_filestat_set_times(PREOPEN, FOLLOW, "link_up_out", 1, 1,
                                                __WASI_FSTFLAGS_MTIM));
    /* A new absolute symlink may be refused at creation or at use; never followed out. */
    e = __wasi_path_symlink("/etc/passwd", PREOPEN, "new_abs");
    CHECK_IN("symlink to an absolute path", e, E_SUCCESS, E_PERM, E_NOTCAPABLE);
    if (e == E_SUCCESS) CHECK_DENIED("follow new_abs", try_read("new_abs", FOLLOW));
    e = __wasi_path_symlink("../outside/secret.txt", PREOPEN, "new_up");
    CHECK_IN("symlink to ../outside", e, E_SUCCESS, E_PERM, E_NOTCAPABLE);
    if (e == E_SUCCESS) CHECK_DENIED("follow new_up", try_read("new_up", FOLLOW));
    /* readlink shows targets but never follows */
    char buf[128];
    __wasi_size_t n = 0;
    CHECK("readlink link_up_out",
          __wasi_path_readlink(PREOPEN, "link_up_out", (uint8_t *)buf, sizeof buf, &n), E_SUCCESS);
    CHECK("readlink length", n, 21);
    /* From an opened subdirectory, .. still cannot climb above the preopen. */
    __wasi_fd_t sub = open_dir(PREOPEN, "sub", &e);
    CHECK("open sub", e, E_SUCCESS);
    fd = (__wasi_fd_t)-1;
    e = __wasi_path_open(sub, 0, "../hello.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    CHECK_DENIED("from sub: ../hello.txt (above the dir fd)", e);
    e = __wasi_path_open(sub, 0, "../../outside/secret.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    CHECK_DENIED("from sub: ../../outside/secret.txt", e);
    return finish();
}
