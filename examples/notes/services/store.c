/* store: the `background` notes store. One JSON request per line on stdin, one JSON reply per
 * line on stdout (every page subscribed sees every reply, so a save shows up in every window).
 * Notes are files /notes/<id>.txt in the preopened app-data folder.
 *
 *   {"rid":1,"op":"list"}                    -> {"rid":1,"op":"list","notes":[{"id","title","modified","size"}...]}
 *   {"rid":2,"op":"load","id":"n1"}          -> {"rid":2,"op":"load","id":"n1","text":"..."}
 *   {"rid":3,"op":"save","id":"n1","text":…} -> {"rid":3,"op":"saved","id":"n1","title":"...","modified":…}
 *   {"rid":4,"op":"delete","id":"n1"}        -> {"rid":4,"op":"deleted","id":"n1"}
 *   any failure                              -> {"rid":N,"op":"error","error":"..."} */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "files.h"
#include "json.h"

#define DIR_PATH "/notes"
#define TITLE_MAX 80

static int valid_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return 0;
    }
    return 1;
}

static void note_path(char *out, size_t cap, const char *id) {
    snprintf(out, cap, DIR_PATH "/%s.txt", id);
}

static void reply_error(long rid, const char *what, const char *detail) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    printf("{\"rid\":%ld,\"op\":\"error\",\"error\":", rid);
    json_write(stdout, msg, strlen(msg));
    printf("}\n");
    fprintf(stderr, "store: %s\n", msg);
}

/* The first non-empty line of `text` (at most TITLE_MAX bytes, cut on a UTF-8 boundary). */
static size_t title_of(const char *text, size_t len, const char **start) {
    size_t i = 0;
    while (i < len && (text[i] == '\n' || text[i] == '\r' || text[i] == ' ' || text[i] == '#'))
        i++;
    size_t end = i;
    while (end < len && text[end] != '\n' && text[end] != '\r' && end - i < TITLE_MAX) end++;
    while (end > i && end < len && ((unsigned char)text[end] & 0xC0) == 0x80) end--;
    *start = text + i;
    return end - i;
}

static void note_summary(const char *id, const char *path) {
    size_t len = 0;
    char *text = read_file(path, &len);
    struct stat st;
    long long modified = stat(path, &st) == 0 ? (long long)st.st_mtim.tv_sec * 1000 +
                                                st.st_mtim.tv_nsec / 1000000 : 0;
    const char *title = "";
    size_t tlen = text ? title_of(text, len, &title) : 0;
    printf("\"id\":");
    json_write(stdout, id, strlen(id));
    printf(",\"title\":");
    json_write(stdout, title, tlen);
    printf(",\"modified\":%lld,\"size\":%zu", modified, len);
    free(text);
}

static void op_list(long rid) {
    DIR *d = opendir(DIR_PATH);
    if (!d) { reply_error(rid, "cannot open " DIR_PATH, strerror(errno)); return; }
    printf("{\"rid\":%ld,\"op\":\"list\",\"notes\":[", rid);
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".txt") != 0) continue;
        char id[80], path[128];
        if (n - 4 >= sizeof id) continue;
        memcpy(id, e->d_name, n - 4);
        id[n - 4] = '\0';
        if (!valid_id(id)) continue;
        note_path(path, sizeof path, id);
        printf(count++ ? ",{" : "{");
        note_summary(id, path);
        printf("}");
    }
    closedir(d);
    printf("]}\n");
    fprintf(stderr, "store: listed %d notes\n", count);
}

static void op_load(long rid, const char *id) {
    char path[128];
    note_path(path, sizeof path, id);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { reply_error(rid, "cannot read note", strerror(errno)); return; }
    printf("{\"rid\":%ld,\"op\":\"load\",\"id\":\"%s\",\"text\":", rid, id);
    json_write(stdout, text, len);
    printf("}\n");
    free(text);
}

static void op_save(long rid, const char *id, const char *text) {
    char path[128], tmp[136];
    note_path(path, sizeof path, id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    size_t len = strlen(text);
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        reply_error(rid, "cannot write note", strerror(errno));
        remove(tmp);
        return;
    }
    if (rename(tmp, path) != 0) {
        reply_error(rid, "cannot replace note", strerror(errno));
        remove(tmp);
        return;
    }
    printf("{\"rid\":%ld,\"op\":\"saved\",", rid);
    note_summary(id, path);
    printf("}\n");
    fprintf(stderr, "store: saved %s (%zu bytes)\n", id, len);
}

static void op_delete(long rid, const char *id) {
    char path[128];
    note_path(path, sizeof path, id);
    if (remove(path) != 0) { reply_error(rid, "cannot delete note", strerror(errno)); return; }
    printf("{\"rid\":%ld,\"op\":\"deleted\",\"id\":\"%s\"}\n", rid, id);
    fprintf(stderr, "store: deleted %s\n", id);
}

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    fprintf(stderr, "store: ready, notes in " DIR_PATH "\n");
    while (getline(&line, &cap, stdin) > 0) {
        long rid = json_int(line, "rid", 0);
        char *op = json_string(line, "op");
        char *id = json_string(line, "id");
        if (!op) reply_error(rid, "request without \"op\"", NULL);
        else if (strcmp(op, "list") == 0) op_list(rid);
        else if (!id || !valid_id(id)) reply_error(rid, "expected an id of a-z, 0-9 and -", NULL);
        else if (strcmp(op, "load") == 0) op_load(rid, id);
        else if (strcmp(op, "delete") == 0) op_delete(rid, id);
        else if (strcmp(op, "save") == 0) {
            char *text = json_string(line, "text");
            if (text) op_save(rid, id, text);
            else reply_error(rid, "save without \"text\"", NULL);
            free(text);
        } else reply_error(rid, "unknown op", op);
        fflush(stdout);
        free(op);
        free(id);
    }
    free(line);
    return 0;
}
