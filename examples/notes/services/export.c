/* export: a `task` service that copies every note from /notes (the app's store, read-only) to
 * /export, a folder the user picked in a dialog and granted for this run only. Each note becomes
 * "<title>.txt". Prints {"exported": N} on stdout; one line per file on stderr. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"

#define SRC "/notes"
#define DST "/export"
#define NAME_MAX_LEN 60

/* A file-name-safe version of the note's first line, or the id if that leaves nothing. */
static void file_name(const char *text, size_t len, const char *id, char *out, size_t cap) {
    size_t o = 0, i = 0;
    while (i < len && (text[i] == '\n' || text[i] == ' ' || text[i] == '#')) i++;
    int dash = 0;
    for (; i < len && text[i] != '\n' && o + 1 < cap && o < NAME_MAX_LEN; i++) {
        unsigned char c = (unsigned char)text[i];
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c >= 0x80;
        if (keep) { out[o++] = (char)c; dash = 0; }
        else if (o > 0 && !dash) { out[o++] = '-'; dash = 1; }
    }
    size_t lead = o; /* drop a UTF-8 sequence cut short by the length limit */
    while (lead > 0 && ((unsigned char)out[lead - 1] & 0xC0) == 0x80) lead--;
    if (lead > 0 && (unsigned char)out[lead - 1] >= 0xC0) {
        unsigned char c = (unsigned char)out[lead - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (o - (lead - 1) < need) o = lead - 1;
    }
    while (o > 0 && out[o - 1] == '-') o--;
    if (o == 0) o = (size_t)snprintf(out, cap, "%s", id);
    out[o] = '\0';
}

int main(void) {
    DIR *d = opendir(SRC);
    if (!d) { fprintf(stderr, "export: cannot open " SRC ": %s\n", strerror(errno)); return 1; }
    int exported = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || n > 100 || strcmp(e->d_name + n - 4, ".txt") != 0) continue;
        char src[128], id[100], name[NAME_MAX_LEN + 8], dst[NAME_MAX_LEN + 40];
        snprintf(src, sizeof src, SRC "/%s", e->d_name);
        snprintf(id, sizeof id, "%.*s", (int)(n - 4), e->d_name);
        size_t len;
        char *text = read_file(src, &len);
        if (!text) { fprintf(stderr, "export: cannot read %s\n", src); failed++; continue; }
        file_name(text, len, id, name, sizeof name);
        snprintf(dst, sizeof dst, DST "/%s.txt", name);
        for (int k = 2; k < 100; k++) { /* never overwrite: "title-2.txt", ... */
            FILE *probe = fopen(dst, "rb");
            if (!probe) break;
            fclose(probe);
            snprintf(dst, sizeof dst, DST "/%s-%d.txt", name, k);
        }
        FILE *out = fopen(dst, "wb");
        if (!out || fwrite(text, 1, len, out) != len || fclose(out) != 0) {
            fprintf(stderr, "export: cannot write %s: %s\n", dst, strerror(errno));
            failed++;
        } else {
            fprintf(stderr, "export: %s\n", dst + sizeof DST);
            exported++;
        }
        free(text);
    }
    closedir(d);
    printf("{\"exported\":%d,\"failed\":%d}\n", exported, failed);
    return failed ? 2 : 0;
}
