/* filter: a `dedicated` service with `frames` messages: image filters on raw RGBA pixels.
 *
 * Request frame:  [u8 op][u8 amount][u16 0][u32 LE width][u32 LE height][width*height*4 RGBA]
 * Reply frame:    the same header and the filtered pixels; an empty frame for a bad request.
 * ops: 1 grayscale, 2 invert, 3 sepia, 4 box blur (radius = amount), 255 crash (traps on purpose).
 * Each frame is `u32 LE length + bytes` on stdin/stdout; a log line per request goes to stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { GRAYSCALE = 1, INVERT = 2, SEPIA = 3, BLUR = 4, CRASH = 255 };
#define HEADER 12
#define MAX_PIXELS (4096u * 4096u)

static const char *NAMES[] = {"?", "grayscale", "invert", "sepia", "blur"};

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int read_exact(void *buf, size_t n) { return fread(buf, 1, n, stdin) == n; }

static void write_frame(const uint8_t *data, uint32_t n) {
    uint8_t len[4] = {n & 0xFF, n >> 8 & 0xFF, n >> 16 & 0xFF, n >> 24};
    fwrite(len, 1, 4, stdout);
    fwrite(data, 1, n, stdout);
    fflush(stdout);
}

static uint8_t clamp(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

static void grayscale(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i += 4) {
        uint8_t y = (uint8_t)((px[i] * 77 + px[i + 1] * 150 + px[i + 2] * 29) >> 8);
        px[i] = px[i + 1] = px[i + 2] = y;
    }
}

static void invert(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i += 4) {
        px[i] = 255 - px[i]; px[i + 1] = 255 - px[i + 1]; px[i + 2] = 255 - px[i + 2];
    }
}

static void sepia(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i += 4) {
        int r = px[i], g = px[i + 1], b = px[i + 2];
        px[i] = clamp((r * 101 + g * 197 + b * 48) >> 8);
        px[i + 1] = clamp((r * 89 + g * 176 + b * 43) >> 8);
        px[i + 2] = clamp((r * 70 + g * 137 + b * 34) >> 8);
    }
}

/* One box-blur pass along rows (step 4) or columns (step 4*width), all four channels. */
static void blur_pass(const uint8_t *src, uint8_t *dst, uint32_t lines, uint32_t count,
                      size_t line_step, size_t step, int radius) {
    for (uint32_t l = 0; l < lines; l++) {
        const uint8_t *s = src + l * line_step;
        uint8_t *d = dst + l * line_step;
        for (int c = 0; c < 4; c++) {
            int sum = 0;
            for (int k = -radius; k <= radius; k++) {
                int idx = k < 0 ? 0 : k >= (int)count ? (int)count - 1 : k;
                sum += s[idx * step + c];
            }
            for (uint32_t x = 0; x < count; x++) {
                d[x * step + c] = (uint8_t)(sum / (2 * radius + 1));
                int out = (int)x - radius, in = (int)x + radius + 1;
                out = out < 0 ? 0 : out;
                in = in >= (int)count ? (int)count - 1 : in;
                sum += s[in * step + c] - s[out * step + c];
            }
        }
    }
}

static int blur(uint8_t *px, uint32_t w, uint32_t h, int radius) {
    if (radius < 1) radius = 1;
    uint8_t *tmp = malloc((size_t)w * h * 4);
    if (!tmp) return 0;
    blur_pass(px, tmp, h, w, (size_t)w * 4, 4, radius);
    blur_pass(tmp, px, w, h, 4, (size_t)w * 4, radius);
    free(tmp);
    return 1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void) {
    uint8_t len_bytes[4];
    fprintf(stderr, "filter: ready\n");
    while (read_exact(len_bytes, 4)) {
        uint32_t n = get_u32(len_bytes);
        uint8_t *frame = malloc(n ? n : 1);
        if (!frame) { fprintf(stderr, "filter: no memory for a %u-byte frame\n", n); return 1; }
        if (!read_exact(frame, n)) { free(frame); break; }
        double start = now_ms();
        uint32_t w = n >= HEADER ? get_u32(frame + 4) : 0, h = n >= HEADER ? get_u32(frame + 8) : 0;
        uint8_t op = n >= 1 ? frame[0] : 0;
        if (op == CRASH) {
            fprintf(stderr, "filter: crash requested, trapping\n");
            __builtin_trap();
        }
        if (n < HEADER || (uint64_t)w * h > MAX_PIXELS || n != HEADER + (size_t)w * h * 4 ||
            op < GRAYSCALE || op > BLUR) {
            fprintf(stderr, "filter: bad request (%u bytes, op %u, %ux%u)\n", n, op, w, h);
            write_frame(frame, 0);
            free(frame);
            continue;
        }
        uint8_t *px = frame + HEADER;
        size_t bytes = (size_t)w * h * 4;
        if (op == GRAYSCALE) grayscale(px, bytes);
        else if (op == INVERT) invert(px, bytes);
        else if (op == SEPIA) sepia(px, bytes);
        else if (!blur(px, w, h, frame[1])) {
            fprintf(stderr, "filter: no memory to blur %ux%u\n", w, h);
            write_frame(frame, 0);
            free(frame);
            continue;
        }
        write_frame(frame, n);
        fprintf(stderr, "filter: %s %ux%u in %.1f ms\n", NAMES[op], w, h, now_ms() - start);
        free(frame);
    }
    fprintf(stderr, "filter: input closed, exiting\n");
    return 0;
}
