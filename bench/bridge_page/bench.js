// Page <-> dedicated-service echo through the bridge, and a plain Web Worker echo as the baseline.
// bench/bench_bridge.py opens index.html in headless Chromium: the page runs on load and saves its
// figures through the `save` service into a folder the benchmark reads. bench/bench_window.py
// opens window.html (script tag marked `data-manual`) in the app window and calls wvwasiBench()
// itself once the page has loaded.
'use strict';

const MANUAL = document.currentScript.hasAttribute('data-manual');
const MIB = 1 << 20;

const log = (text) => { document.getElementById('log').textContent += `\n${text}`; };

function settings(quick) {
  return quick
    ? {repeats: 1, pipelined: 20000, serial: 500, big: 10, spawns: 5}
    : {repeats: 3, pipelined: 100000, serial: 3000, big: 40, spawns: 10};
}

function roundTrip(worker, message) {
  return new Promise((resolve) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.postMessage(message);
  });
}

async function pipelined(worker, n, make) {
  await roundTrip(worker, make(0));
  const done = new Promise((resolve) => {
    let count = 0;
    worker.onmessage = () => { if (++count === n) resolve(); };
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) worker.postMessage(make(i));
  await done;
  return n / ((performance.now() - t0) / 1000);
}

async function serial(worker, n, make) {
  await roundTrip(worker, make(0));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await roundTrip(worker, make(i));
  return n / ((performance.now() - t0) / 1000);
}

// Is `back` the same data as `sent`? Strings compare whole; bytes (ArrayBuffer or view) word by
// word, every byte checked, as the js_api baseline checks every echo.
function same(back, sent) {
  if (typeof sent === 'string') return back === sent;
  const words = (x) => (ArrayBuffer.isView(x)
    ? new Uint32Array(x.buffer, x.byteOffset, x.byteLength >> 2)
    : new Uint32Array(x, 0, x.byteLength >> 2));
  if (back.byteLength !== sent.byteLength) return false;
  const a = words(back), b = words(sent);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// 1 MiB round trips one at a time, each echo checked in full; MiB/s each way.
async function bigRoundTrips(worker, n, message) {
  await roundTrip(worker, message);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (!same(await roundTrip(worker, message), message)) throw new Error('bad 1 MiB echo');
  }
  const size = typeof message === 'string' ? message.length : message.byteLength;
  return (n * size / MIB) / ((performance.now() - t0) / 1000);
}

// The 1 MiB records: bytes for `frames`, for `lines` the same ASCII string as the js_api page's.
const BIG_BYTES = new Uint8Array(MIB).map((_, i) => i % 251);
const BIG_TEXT = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(MIB / 32).slice(0, MIB);

async function repeat(n, fn) {
  const values = [];
  for (let i = 0; i < n; i++) values.push(await fn());
  values.sort((a, b) => a - b);
  return {median: values[Math.floor(values.length / 2)], best: values[values.length - 1]};
}

// `new WasiWorker` -> its first echoed message, in ms. The page's first worker also opens the
// page's connection to the bridge: it is reported apart from the median of the others.
async function firstMessages(n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const worker = new WasiWorker('echo');
    await roundTrip(worker, 'hello');
    times.push(performance.now() - t0);
    worker.terminate();
  }
  const rest = times.slice(1).sort((a, b) => a - b);
  return {first: times[0], median: rest[Math.floor(rest.length / 2)]};
}

async function measure(label, spawn, text, s) {
  const small = text ? (i) => `message ${i}` : (i) => new Uint32Array([i, i, i, i]);
  const big = text ? BIG_TEXT : BIG_BYTES;
  const results = {};
  for (const [key, run] of [
    ['pipelined_msgs_per_s', (w) => pipelined(w, s.pipelined, small)],
    ['one_at_a_time_msgs_per_s', (w) => serial(w, s.serial, small)],
    ['mib_round_trip_mib_per_s', (w) => bigRoundTrips(w, s.big, big)],
  ]) {
    results[key] = await repeat(s.repeats, async () => {
      const worker = spawn();
      try {
        return await run(worker);
      } finally {
        worker.terminate();
      }
    });
    log(`${label} ${key}: ${Math.round(results[key].median)}`);
  }
  return results;
}

/** Every figure (medians and bests of `repeats` runs); `webWorker: false` skips the baseline. */
globalThis.wvwasiBench = async ({quick = false, webWorker = true} = {}) => {
  const s = settings(quick);
  const results = {first_message_ms: await firstMessages(s.spawns)};
  log(`new WasiWorker -> first message: ${results.first_message_ms.first.toFixed(1)} ms first,`
      + ` ${results.first_message_ms.median.toFixed(1)} ms median`);
  results.lines = await measure('lines', () => new WasiWorker('echo'), true, s);
  results.frames = await measure('frames', () => new WasiWorker('frames'), false, s);
  if (webWorker) {
    results.web_worker = await measure('web worker', () => new Worker('echo-worker.js'), false, s);
    const worker = new Worker('echo-worker.js');
    results.web_worker.mib_string_round_trip_mib_per_s = await repeat(
      s.repeats, () => bigRoundTrips(worker, s.big, BIG_TEXT));
    worker.terminate();
  }
  return results;
};

async function runAndSave() {
  const quick = new URLSearchParams(location.hash.slice(1)).get('quick') === '1';
  let results;
  try {
    results = await globalThis.wvwasiBench({quick});
  } catch (e) {
    log(`failed: ${e.stack}`);
    results = {error: String(e.stack)};
  }
  if (globalThis.wvwasiBenchSave) await globalThis.wvwasiBenchSave(results); // web build
  else await WasiWorker.run('save', {args: ['/out/results.json', JSON.stringify(results)]});
  log('saved');
}

if (!MANUAL) runAndSave();
