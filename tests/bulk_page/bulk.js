// Large records mixed with small ones through one worker, checked for order and content.
// tests/bulk_driver.py opens this page in the app window and awaits `bulkCheck()`.
'use strict';

const MIB = 1 << 20;

// Message `i` of `size` bytes: its index in the first 4 bytes, then bytes that depend on both.
function record(i, size) {
  const bytes = new Uint8Array(Math.max(size, 4));
  for (let k = 4; k < bytes.length; k++) bytes[k] = (k * 31 + i) & 0xff;
  new DataView(bytes.buffer).setUint32(0, i, true);
  return bytes;
}

function sameBytes(back, sent) {
  const a = new Uint8Array(back), b = sent;
  if (a.length !== b.length) return `length ${a.length}, sent ${b.length}`;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return `byte ${k} differs`;
  return null;
}

// Post every message at once (the page API paces them by the bridge's credit), then compare
// the echoes in arrival order with what was sent.
function echoAll(service, messages, same) {
  return new Promise((resolve, reject) => {
    const worker = new WasiWorker(service);
    const problems = [];
    let n = 0;
    worker.onerror = (e) => reject(new Error(`${service}: ${e.message}`));
    worker.onmessage = (e) => {
      const bad = n < messages.length ? same(e.data, messages[n]) : 'an extra message';
      if (bad) problems.push(`echo ${n}: ${bad}`);
      if (++n === messages.length) {
        worker.terminate();
        resolve({count: n, problems});
      }
    };
    for (const m of messages) worker.postMessage(m);
  });
}

globalThis.bulkCheck = async () => {
  // frames: small, 1 MiB, small, 16 MiB (the default limits.message), small, 1 MiB, small...
  const sizes = [16, MIB, 3, 16 * MIB, 100, MIB, 0, MIB + 7, 5];
  const frames = await echoAll('frames', sizes.map((s, i) => record(i, s)), sameBytes);
  // lines: 1 MiB strings between short ones.
  const big = (i) => `${i}:` + 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(MIB / 32).slice(0, MIB);
  const texts = ['a', big(1), 'b', big(3), 'c'];
  const lines = await echoAll('echo', texts,
    (back, sent) => (back === sent ? null : `got ${back.length} chars, sent ${sent.length}`));
  return {frames, lines, sizes};
};
