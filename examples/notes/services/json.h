/* Tiny JSON helpers shared by the notes services: read a field of a flat object, write escaped
 * strings. Enough for one-object-per-line protocols; not a general JSON parser. */
#ifndef NOTES_JSON_H
#define NOTES_JSON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Points at the value of "key" in the flat object `obj` (after the colon), or NULL. */
static inline const char *json_find(const char *obj, const char *key) {
    size_t klen = strlen(key);
    const char *p = obj;
    while ((p = strchr(p, '"')) != NULL) {
        const char *start = ++p;
        while (*p && *p != '"') p += (*p == '\\' && p[1]) ? 2 : 1;
        if (!*p) return NULL;
        int match = (size_t)(p - start) == klen && memcmp(start, key, klen) == 0;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != ':') continue; /* that was a value, not a key */
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (match) return p;
    }
    return NULL;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static inline size_t utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static inline int json_hex4(const char *p, unsigned *cp) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return 0;
        v = v << 4 | (unsigned)h;
    }
    *cp = v;
    return 1;
}

/* The string value of "key", unescaped into a new malloc'd buffer; NULL if absent or not a
 * string. */
static inline char *json_string(const char *obj, const char *key) {
    const char *p = json_find(obj, key);
    if (!p || *p != '"') return NULL;
    p++;
    char *out = malloc(strlen(p) + 1), *o = out;
    if (!out) return NULL;
    while (*p && *p != '"') {
        if (*p != '\\') { *o++ = *p++; continue; }
        p++;
        unsigned cp;
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u':
            if (!json_hex4(p + 1, &cp)) { free(out); return NULL; }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo;
                if (json_hex4(p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            o += utf8_put(o, cp);
            break;
        case '\0': free(out); return NULL;
        default: *o++ = *p; break; /* \" \\ \/ */
        }
        p++;
    }
    if (*p != '"') { free(out); return NULL; }
    *o = '\0';
    return out;
}

/* The integer value of "key", or `fallback`. */
static inline long json_int(const char *obj, const char *key, long fallback) {
    const char *p = json_find(obj, key);
    if (!p) return fallback;
    char *end;
    long v = strtol(p, &end, 10);
    return end == p ? fallback : v;
}

/* Writes `s` (`len` bytes) to `f` as a quoted JSON string. */
static inline void json_write(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); }
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

#endif
