/* Whole-file reading shared by the notes services. */
#ifndef NOTES_FILES_H
#define NOTES_FILES_H

#include <stdio.h>
#include <stdlib.h>

/* The contents of `path`, NUL-terminated, length in *len; NULL if it cannot be read. */
static inline char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

#endif
