/* fsloop DIR N: times N stat() calls, N 64 KiB reads (open, read, close) and N 64 KiB writes
 * (pwrite at 0) on DIR/file, and prints `stat_us read64k_us write64k_us` (microseconds per
 * operation). For bench/bench_page_hostfs.py: the same guest on a host folder of a page-supplied
 * module, on an in-memory vfs file, and natively under wasmtime. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static char buf[65536];

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    char path[512];
    snprintf(path, sizeof path, "%s/file", argv[1]);
    int n = atoi(argv[2]);
    struct stat st;
    double t = now_us();
    for (int i = 0; i < n; i++) if (stat(path, &st) != 0) { perror("stat"); return 1; }
    double stat_us = (now_us() - t) / n;
    t = now_us();
    for (int i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0 || read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("read"); return 1; }
        close(fd);
    }
    double read_us = (now_us() - t) / n;
    int fd = open(path, O_RDWR);
    t = now_us();
    for (int i = 0; i < n && fd >= 0; i++) {
        if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) { perror("write"); return 1; }
    }
    double write_us = fd >= 0 ? (now_us() - t) / n : -1;
    if (fd >= 0) close(fd);
    printf("%.1f %.1f %.1f\n", stat_us, read_us, write_us);
    return 0;
}
