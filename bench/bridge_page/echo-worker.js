// Baseline: a plain Web Worker that echoes every message.
onmessage = (e) => postMessage(e.data);
