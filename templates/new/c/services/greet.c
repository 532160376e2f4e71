// The `greet` service: reads a name on stdin, writes "Hello, <name>!" on stdout.
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
