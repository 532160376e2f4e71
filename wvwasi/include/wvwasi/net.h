/* wvwasi/net.h: allow-listed outbound TCP, and TLS done by the host, for wvwasi services.
 *
 * A service may connect only to what its manifest lists:
 *     [services.NAME] net = { connect = ["api.example.com:443", "127.0.0.1:8080"] }
 * Every call returns a negative WASI errno on failure (see <errno.h>):
 *     -EACCES     the host:port is not listed, or a listed name resolved to a loopback,
 *                 private or link-local address that is not itself listed (nothing was sent)
 *     -EMFILE     too many sockets open (net.sockets per instance, [limits] sockets per app)
 *     -EAGAIN     wvwasi_recv: nothing arrived within timeout_ms
 *     -ETIMEDOUT  connect (or a send) took longer than net.connect_timeout / net.read_timeout
 *     -EPROTO     TLS failed (certificate not trusted, wrong host name, handshake)
 *     -EINTR      the service is being stopped (terminate(), a timeout)
 *     -EFAULT     a buffer outside the module's memory; -EBADF: not an open handle
 * wvwasi_net_error() copies the text of this instance's last failure.
 * Handles are not file descriptors: use them only with these functions. Open ones are closed
 * when the instance ends. Build with: clang --target=wasm32-wasi -I "$(wvwasi info --include)"
 */
#ifndef WVWASI_NET_H
#define WVWASI_NET_H

#include <stddef.h>
#include <string.h>

#define WVWASI_NET_IMPORT(name) __attribute__((import_module("wvwasi_net"), import_name(name)))

WVWASI_NET_IMPORT("connect") int __wvwasi_net_connect(const char *host, size_t host_len,
                                                      int port, int tls);
WVWASI_NET_IMPORT("send") long __wvwasi_net_send(int handle, const void *buf, size_t len);
WVWASI_NET_IMPORT("recv") long __wvwasi_net_recv(int handle, void *buf, size_t len,
                                                 int timeout_ms);
WVWASI_NET_IMPORT("close") int __wvwasi_net_close(int handle);
WVWASI_NET_IMPORT("error") long __wvwasi_net_error(char *buf, size_t len);

/* Open a TCP connection to host:port; a handle >= 0, or -errno. */
static inline int wvwasi_connect(const char *host, int port) {
    return __wvwasi_net_connect(host, strlen(host), port, 0);
}

/* The same, then TLS with the host's certificate checks (system store + the app's net.ca). */
static inline int wvwasi_connect_tls(const char *host, int port) {
    return __wvwasi_net_connect(host, strlen(host), port, 1);
}

/* Send up to len bytes (at most 1 MiB per call); the count sent, or -errno. */
static inline long wvwasi_send(int handle, const void *buf, size_t len) {
    return __wvwasi_net_send(handle, buf, len);
}

/* Receive up to len bytes, waiting at most timeout_ms (< 0: up to net.read_timeout);
 * the count read, 0 at end of stream, -EAGAIN if nothing came in time, or -errno. */
static inline long wvwasi_recv(int handle, void *buf, size_t len, int timeout_ms) {
    return __wvwasi_net_recv(handle, buf, len, timeout_ms);
}

/* Close a handle; 0 or -EBADF. */
static inline int wvwasi_close(int handle) { return __wvwasi_net_close(handle); }

/* The last failure's text, NUL-terminated in buf (cut to len); returns its full length. */
static inline long wvwasi_net_error(char *buf, size_t len) { return __wvwasi_net_error(buf, len); }

#endif
