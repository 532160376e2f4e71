// The alternative transport, measured: the Worker blocks in Atomics.wait while the page relays
// its call (here over the app's WebSocket, to a native echo service) and posts the reply back.
onmessage = (event) => {
  const {shared, calls} = event.data;
  const cell = new Int32Array(shared, 0, 1);
  const t = performance.now();
  for (let i = 0; i < calls; i++) {
    Atomics.store(cell, 0, 0);
    postMessage({call: i});
    Atomics.wait(cell, 0, 0);
  }
  postMessage({done: (performance.now() - t) * 1000 / calls});
};
