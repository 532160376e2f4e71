/* Allocation-heavy: binary trees built and freed (depth 4..16) plus a churn of 2 M
 * mixed-size malloc/free in a table of 4096 slots. Built natively and for wasm32-wasi by
 * bench/bench_compute.py; prints a checksum. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct node { struct node *l, *r; };

static struct node *make(int depth) {
    struct node *n = malloc(sizeof *n);
    if (!n) abort();
    n->l = depth ? make(depth - 1) : NULL;
    n->r = depth ? make(depth - 1) : NULL;
    return n;
}

static long check(struct node *n) {
    long c = 1 + (n->l ? check(n->l) + check(n->r) : 0);
    free(n);
    return c;
}

int main(void) {
    long sum = 0;
    for (int d = 4; d <= 16; d += 2)
        for (int i = 0; i < (1 << (16 - d)) * 2; i++) sum += check(make(d));
    static void *slots[4096];
    uint32_t x = 2463534242u;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        unsigned s = x % 4096;
        free(slots[s]);
        size_t size = 16 + (x >> 12) % 4096;
        unsigned char *p = malloc(size);
        if (!p) abort();
        p[0] = (unsigned char)i; p[size - 1] = (unsigned char)s;
        sum += p[0] + p[size - 1];
        slots[s] = p;
    }
    for (int s = 0; s < 4096; s++) free(slots[s]);
    printf("%ld\n", sum);
    return 0;
}
