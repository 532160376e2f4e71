// Run by bench/bench_bridge.py in a headless Chromium without Playwright. Measures page <->
// dedicated-service echo through the bridge (and a Web Worker baseline), then saves the figures
// through the `save` service into a folder the benchmark reads.
'use strict';

const params = new URLSearchParams(location.hash.slice(1));
const QUICK = params.get('quick') === '1';
const REPEATS = QUICK ? 1 : 3;
const N_PIPELINED = QUICK ? 20000 : 100000;
const N_SERIAL = QUICK ? 500 : 3000;
const N_BIG = QUICK ? 10 : 40;
const MIB = 1 << 20;

const log = (text) => { document.getElementById('log').textContent += `\n${text}`; };

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

async function bigRoundTrips(worker, n, message) {
  await roundTrip(worker, message.slice());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const back = await roundTrip(worker, message);
    if (back.byteLength !== message.byteLength) throw new Error('short echo');
  }
  return (n * message.byteLength / MIB) / ((performance.now() - t0) / 1000);
}

async function repeat(fn) {
  const values = [];
  for (let i = 0; i < REPEATS; i++) values.push(await fn());
  values.sort((a, b) => a - b);
  return {median: values[Math.floor(values.length / 2)], best: values[values.length - 1]};
}

async function measure(label, spawn, text) {
  const small = text ? (i) => `message ${i}` : (i) => new Uint32Array([i, i, i, i]);
  const big = new Uint8Array(MIB).map((_, i) => i % 251);
  const results = {};
  for (const [key, run] of [
    ['pipelined_msgs_per_s', (w) => pipelined(w, N_PIPELINED, small)],
    ['one_at_a_time_msgs_per_s', (w) => serial(w, N_SERIAL, small)],
    ['mib_round_trip_mib_per_s', (w) => bigRoundTrips(w, N_BIG, big)],
  ]) {
    if (key.startsWith('mib') && text) continue;
    results[key] = await repeat(async () => {
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

async function main() {
  const results = {
    lines: await measure('lines', () => new WasiWorker('echo'), true),
    frames: await measure('frames', () => new WasiWorker('frames'), false),
    web_worker: await measure('web worker', () => new Worker('echo-worker.js'), false),
  };
  await WasiWorker.run('save', {args: ['/out/results.json', JSON.stringify(results)]});
  log('saved');
}

main().catch(async (e) => {
  log(`failed: ${e.stack}`);
  await WasiWorker.run('save', {args: ['/out/results.json', JSON.stringify({error: String(e.stack)})]});
});
