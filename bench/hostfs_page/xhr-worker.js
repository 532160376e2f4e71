// The chosen transport, measured at the JavaScript level: one synchronous XMLHttpRequest from the
// Worker to the app's bridge per call (here a small UI file: the same auth, loop and thread hop).
// With `fetch: true`, awaited fetch() calls one after another instead (for comparison).
onmessage = async (event) => {
  const {url, calls, fetch: useFetch, method = 'GET', body = null} = event.data;
  const t = performance.now();
  for (let i = 0; i < calls; i++) {
    if (useFetch) {
      const r = await fetch(url, {method, body});
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      continue;
    }
    const xhr = new XMLHttpRequest();
    xhr.open(method, url, false);
    xhr.send(body);
    if (xhr.status !== 200) throw new Error(`HTTP ${xhr.status}`);
  }
  postMessage({done: (performance.now() - t) * 1000 / calls});
};
