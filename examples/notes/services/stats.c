/* stats: a `task` service. Reads a note on stdin, prints one JSON object of statistics:
 * characters, words, lines, sentences, paragraphs, reading time and the most frequent words. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define TOP 5
#define MIN_WORD 4 /* shorter words ("the", "and") are left out of the top list */

typedef struct { char *word; size_t len; unsigned count; } Entry;

static Entry *table;
static size_t table_cap, table_used;

static unsigned hash(const char *s, size_t n) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void count_word(const char *w, size_t n);

static void grow(void) {
    Entry *old = table;
    size_t old_cap = table_cap;
    table_cap = table_cap ? table_cap * 2 : 256;
    table = calloc(table_cap, sizeof *table);
    if (!table) { fputs("stats: out of memory\n", stderr); exit(1); }
    table_used = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].word) continue;
        size_t j = hash(old[i].word, old[i].len) & (table_cap - 1);
        while (table[j].word) j = (j + 1) & (table_cap - 1);
        table[j] = old[i];
        table_used++;
    }
    free(old);
}

static void count_word(const char *w, size_t n) {
    if (table_used * 2 >= table_cap) grow();
    size_t j = hash(w, n) & (table_cap - 1);
    while (table[j].word) {
        if (table[j].len == n && memcmp(table[j].word, w, n) == 0) { table[j].count++; return; }
        j = (j + 1) & (table_cap - 1);
    }
    table[j].word = malloc(n);
    if (!table[j].word) { fputs("stats: out of memory\n", stderr); exit(1); }
    memcpy(table[j].word, w, n);
    table[j].len = n;
    table[j].count = 1;
    table_used++;
}

static int word_byte(unsigned char c) { return isalnum(c) || c == '\'' || c >= 0x80; }

int main(void) {
    size_t cap = 1 << 16, len = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) text = realloc(text, cap *= 2);
    }
    if (!text) { fputs("stats: out of memory\n", stderr); return 1; }

    size_t chars = 0, words = 0, lines = len > 0, sentences = 0, paragraphs = 0;
    int blank_run = 1; /* at a paragraph start */
    char word[64];
    size_t wlen = 0, wbytes = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)text[i] : ' ';
        if (i < len && (c & 0xC0) != 0x80) chars++;
        if (i < len && word_byte(c)) {
            if (wbytes == 0) words++;
            if (wlen < sizeof word) word[wlen++] = (char)tolower(c);
            wbytes++;
            if (blank_run) { paragraphs++; blank_run = 0; }
            continue;
        }
        if (wbytes >= MIN_WORD && wlen == wbytes) count_word(word, wlen);
        wlen = wbytes = 0;
        if (c == '.' || c == '!' || c == '?') {
            unsigned char next = i + 1 < len ? (unsigned char)text[i + 1] : ' ';
            if (isspace(next)) sentences++;
        }
        if (c == '\n' && i < len) {
            if (i + 1 < len) lines++;
            size_t k = i + 1;
            while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
            if (k < len && text[k] == '\n') blank_run = 1;
        }
    }

    Entry *top[TOP] = {0};
    for (size_t i = 0; i < table_cap; i++) {
        Entry *e = &table[i];
        if (!e->word) continue;
        for (int t = 0; t < TOP; t++) {
            if (!top[t] || e->count > top[t]->count ||
                (e->count == top[t]->count && memcmp(e->word, top[t]->word,
                    e->len < top[t]->len ? e->len : top[t]->len) < 0)) {
                memmove(&top[t + 1], &top[t], (TOP - t - 1) * sizeof top[0]);
                top[t] = e;
                break;
            }
        }
    }

    printf("{\"bytes\":%zu,\"chars\":%zu,\"words\":%zu,\"lines\":%zu,\"sentences\":%zu,"
           "\"paragraphs\":%zu,\"reading_seconds\":%zu,\"top\":[",
           len, chars, words, lines, sentences, paragraphs, (words * 60 + 199) / 200);
    for (int t = 0; t < TOP && top[t]; t++) {
        printf(t ? ",[" : "[");
        json_write(stdout, top[t]->word, top[t]->len);
        printf(",%u]", top[t]->count);
    }
    printf("]}\n");
    fprintf(stderr, "stats: %zu words in %zu bytes\n", words, len);
    return 0;
}
