/* Test program for the WASI layer through C and wasi-libc: `wasi-c DIR [ARGS...]`.
 *
 * Built by crates/nebulet/build.rs with clang for wasm32-wasi (when clang and the wasi-libc
 * sysroot are installed) and run by the hosted integration tests with DIR preopened. It writes
 * DIR/from-c.txt with stdio, reads it back, lists DIR with opendir/readdir, prints its
 * arguments and NEBULET_TEST, checks the clocks, and exits with WASI_C_EXIT (42) on success, or
 * prints `wasi-c: FAILED ...` to stderr and exits 1.
 *
 * `wasi-c --tcp COUNT`, with a listening socket at fd 3: waits for each of COUNT connections with
 * poll, accepts it, reads it to its end (read and recv in turn), sends it all back with send,
 * shuts down writing and closes it; exits WASI_C_EXIT.
 */
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WASI_C_EXIT 42
#define CONTENTS "written by wasi-c\n"

static void fail(const char *what) {
    fprintf(stderr, "wasi-c: FAILED %s (errno %d: %s)\n", what, errno, strerror(errno));
    exit(1);
}

static int compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int tcp_echo(int count) {
    for (int connection = 0; connection < count; connection++) {
        struct pollfd waiting = {.fd = 3, .events = POLLIN};
        if (poll(&waiting, 1, -1) != 1 || !(waiting.revents & POLLIN)) fail("poll on the listener");
        int socket = accept(3, NULL, NULL);
        if (socket < 0) fail("accept");
        static char data[1 << 20];
        size_t length = 0;
        for (int turn = 0;; turn++) {
            ssize_t got = turn % 2 ? recv(socket, data + length, sizeof data - length, 0)
                                   : read(socket, data + length, sizeof data - length);
            if (got < 0) fail("read or recv");
            if (got == 0) break;
            length += (size_t)got;
        }
        for (size_t sent = 0; sent < length;) {
            ssize_t put = send(socket, data + sent, length - sent, 0);
            if (put <= 0) fail("send");
            sent += (size_t)put;
        }
        if (shutdown(socket, SHUT_WR) != 0) fail("shutdown");
        if (close(socket) != 0) fail("close");
    }
    printf("wasi-c: echoed %d connections\n", count);
    return WASI_C_EXIT;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--tcp") == 0) {
        return tcp_echo(atoi(argv[2]));
    }
    if (argc < 2) {
        errno = 0;
        fail("usage: wasi-c DIR [ARGS...]");
    }
    const char *dir = argv[1];
    printf("wasi-c: argc=%d\n", argc);
    for (int i = 1; i < argc; i++) {
        printf("wasi-c: argv[%d]=%s\n", i, argv[i]);
    }
    const char *test = getenv("NEBULET_TEST");
    printf("wasi-c: NEBULET_TEST=%s\n", test ? test : "(unset)");

    /* Write a file with stdio, then read it back. */
    char path[512];
    snprintf(path, sizeof path, "%s/from-c.txt", dir);
    FILE *file = fopen(path, "w");
    if (!file) fail("fopen for writing");
    if (fprintf(file, "%s", CONTENTS) < 0) fail("fprintf");
    if (fclose(file) != 0) fail("fclose after writing");
    file = fopen(path, "r");
    if (!file) fail("fopen for reading");
    char buffer[128] = {0};
    size_t count = fread(buffer, 1, sizeof buffer - 1, file);
    if (ferror(file)) fail("fread");
    fclose(file);
    if (count != strlen(CONTENTS) || strcmp(buffer, CONTENTS) != 0) {
        errno = 0;
        fail("the file read back differs");
    }
    printf("wasi-c: read back %zu bytes\n", count);

    /* A missing file is ENOENT. */
    errno = 0;
    if (fopen("/no/such/preopen/file", "r") != NULL) {
        errno = 0;
        fail("opening a file outside every preopen succeeded");
    }
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    if (fopen(path, "r") != NULL || errno != ENOENT) fail("opening a missing file is not ENOENT");

    /* List the directory, sorted, without . and .. */
    DIR *listing = opendir(dir);
    if (!listing) fail("opendir");
    char *names[64];
    int entries = 0;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        if (entries < 64) names[entries++] = strdup(entry->d_name);
    }
    closedir(listing);
    qsort(names, entries, sizeof names[0], compare);
    printf("wasi-c: entries:");
    for (int i = 0; i < entries; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");

    /* Clocks: the wall clock is after 2020; the monotonic clock does not go back. */
    struct timespec wall, first, second;
    if (clock_gettime(CLOCK_REALTIME, &wall) != 0) fail("clock_gettime(CLOCK_REALTIME)");
    if (wall.tv_sec < 1577836800) {
        errno = 0;
        fail("the wall clock is before 2020");
    }
    if (clock_gettime(CLOCK_MONOTONIC, &first) != 0) fail("clock_gettime(CLOCK_MONOTONIC)");
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
    if (clock_gettime(CLOCK_MONOTONIC, &second) != 0) fail("clock_gettime(CLOCK_MONOTONIC)");
    long long elapsed = (second.tv_sec - first.tv_sec) * 1000000000LL +
                        (second.tv_nsec - first.tv_nsec);
    if (elapsed < 5 * 1000 * 1000) {
        errno = 0;
        fail("a 5 ms nanosleep took less than 5 ms on CLOCK_MONOTONIC");
    }
    printf("wasi-c: clocks ok\n");

    printf("wasi-c: ok\n");
    fflush(stdout);
    return WASI_C_EXIT;
}
