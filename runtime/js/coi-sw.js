/*
 * wvwasi web builds: a service worker that makes the site cross-origin isolated on static hosts
 * that cannot set response headers (GitHub Pages and the like). It re-serves every same-origin
 * response with Cross-Origin-Opener-Policy / -Embedder-Policy, which lets the browser engine's
 * Workers block on stdin (SharedArrayBuffer + Atomics.wait).
 *
 * The site's wvwasi.js registers it (scope: the site's folder) when the page is not isolated
 * and reloads the page once it controls it. Hosts that honour the site's `_headers` file (or
 * are configured with the same headers) never need it. Docs: docs/web.md.
 */
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  if (new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(fetch(request).then((response) => {
    if (response.status === 0) return response;
    const headers = new Headers(response.headers);
    headers.set('Cross-Origin-Opener-Policy', 'same-origin');
    headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
    headers.set('Cross-Origin-Resource-Policy', 'same-origin');
    return new Response(response.body, {status: response.status, statusText: response.statusText,
      headers});
  }));
});
