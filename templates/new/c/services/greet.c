// The `greet` service: reads a name on stdin, writes "Hello, <name>!" on stdout.
//
// Services have no network unless wvwasi.toml lists where they may connect, e.g.
//     net = { connect = ["api.example.com:443"] }
// and then call the host through <wvwasi/net.h> (add -I "$(wvwasi info --include)" to the build):
//     int h = wvwasi_connect_tls("api.example.com", 443);   // TLS checked by the host
//     wvwasi_send(h, request, strlen(request));
//     long n = wvwasi_recv(h, buf, sizeof buf, 5000);        // 0 at EOF, -EAGAIN after 5 s
//     wvwasi_close(h);
#include <stdio.h>
#include <string.h>

int main(void) {
    char name[256];
    size_t n = fread(name, 1, sizeof name - 1, stdin);
    while (n > 0 && (name[n - 1] == '\n' || name[n - 1] == ' ')) n--;
    name[n] = '\0';
    if (n == 0) {
        fputs("no name given\n", stderr);
        return 1;
    }
    printf("Hello, %s!\n", name);
    return 0;
}
