/* A slow disk for the pressure tests, as an LD_PRELOAD shim: every fsync and fdatasync sleeps
 * SLOW_DISK_DELAY_MS milliseconds (default 20) before doing the real call, as a disk whose cache
 * flushes take that long would. RocksDB syncs its write-ahead log with fdatasync (fsync for
 * directories and new files); Rust's File::sync_all is fsync. Nothing else changes.
 *
 *   gcc -shared -fPIC -O2 -o slowdisk.so slowdisk.c -ldl
 *   SLOW_DISK_DELAY_MS=20 LD_PRELOAD=$PWD/slowdisk.so warren ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void slow_down(void) {
    static long delay_ms = -1;
    if (delay_ms < 0) {
        const char *s = getenv("SLOW_DISK_DELAY_MS");
        delay_ms = s ? atol(s) : 20;
    }
    int saved = errno;
    struct timespec t = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {
    }
    errno = saved;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}
