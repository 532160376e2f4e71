/* Benchmark echo service for every ipc mode, written the way a throughput-minded service would be:
 * big reads, every complete message in a read handled at once, one write per batch.
 * argv[1] = "lines" | "frames" | "stream". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Length of the complete messages at the start of buf[0..n) in this mode. */
static size_t complete(const char *mode, const unsigned char *buf, size_t n) {
    if (mode[0] == 's') return n;
    if (mode[0] == 'l') {
        for (size_t i = n; i > 0; i--)
            if (buf[i - 1] == '\n') return i;
        return 0;
    }
    size_t pos = 0;
    while (n - pos >= 4) {
        uint32_t len = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | (uint32_t)buf[pos + 3] << 24;
        if (n - pos - 4 < len) break;
        pos += 4 + (size_t)len;
    }
    return pos;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "stream";
    size_t cap = 1 << 21, fill = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (fill == cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(0, buf + fill, cap - fill);
        if (r <= 0) return r < 0;
        fill += (size_t)r;
        size_t done = complete(mode, buf, fill);
        if (done && write_all((char *)buf, done) < 0) return 1;
        memmove(buf, buf + done, fill - done);
        fill -= done;
    }
}
