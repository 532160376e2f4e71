/* CPU-bound work for bench/bench_browser_wasi.py: counts the primes below argv[1] (default 5e6)
 * with a sieve, ROUNDS times, and prints the count. No WASI calls while it computes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 5

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 5000000;
    unsigned char *composite = malloc(n);
    if (!composite) return 2;
    size_t count = 0;
    for (int round = 0; round < ROUNDS; round++) {
        memset(composite, 0, n);
        count = 0;
        for (size_t i = 2; i < n; i++) {
            if (composite[i]) continue;
            count++;
            for (size_t j = i * i; j < n; j += i) composite[j] = 1;
        }
    }
    printf("%zu\n", count);
    return 0;
}
