// bench/bench_page_hostfs.py's page: see that file. Saves its figures through the `save` service.
const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
const params = new URLSearchParams(location.hash.slice(1));
const N = Number(params.get('n') ?? 200);
const CALLS = Number(params.get('calls') ?? 2000);
const ROUNDS = Number(params.get('rounds') ?? 3);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function guest(options) {
  const r = await WasiWorker.run('mods/fsloop.wasm', {args: ['/data', String(N)], ...options});
  if (r.exitCode !== 0) throw new Error(`fsloop: ${r.exitCode} ${r.stderr}`);
  return r.stdout.trim().split(' ').map(Number);
}

async function native() {
  const r = await WasiWorker.run('fsloop', {args: ['/data', String(N)]});
  if (r.exitCode !== 0) throw new Error(`native fsloop: ${r.exitCode} ${r.stderr}`);
  return r.stdout.trim().split(' ').map(Number);
}

function worker(url, message, onCall) {
  return new Promise((resolve, reject) => {
    const w = new Worker(url);
    w.onmessage = (e) => {
      if (e.data.done !== undefined) { w.terminate(); resolve(e.data.done); } else onCall(e.data);
    };
    w.onerror = (e) => reject(new Error(e.message));
    w.postMessage(message);
  });
}

async function relay() {
  const echo = new WasiWorker('echo');
  const shared = new SharedArrayBuffer(4);
  const cell = new Int32Array(shared);
  echo.onmessage = () => { Atomics.store(cell, 0, 1); Atomics.notify(cell, 0); };
  const us = await worker('relay-worker.js', {shared, calls: CALLS},
    ({call}) => echo.postMessage(`call ${call}`));
  echo.terminate();
  return us;
}

async function main() {
  const file = new Uint8Array(65536).fill(7);
  const rows = {host: [], memory: [], native: [], xhr: [], relay: [], fetch: []};
  for (let round = 0; round < ROUNDS; round++) {
    rows.host.push(await guest({preopens: ['/data']}));
    rows.memory.push(await guest({vfs: {'/data/file': file}}));
    rows.native.push(await native());
    rows.xhr.push(await worker('xhr-worker.js', {url: new URL('small.txt', location.href).href,
      calls: CALLS}, () => {}));
    rows.relay.push(await relay());
    rows.fetch.push(await worker('xhr-worker.js', {url: new URL('small.txt', location.href).href,
      calls: CALLS, fetch: true}, () => {}));
    log(`round ${round + 1} done`);
  }
  const column = (list, i) => median(list.map((r) => r[i]));
  const results = {n: N, calls: CALLS, rounds: ROUNDS};
  for (const key of ['host', 'memory', 'native']) {
    results[key] = {stat: column(rows[key], 0), read64k: column(rows[key], 1),
      write64k: column(rows[key], 2)};
  }
  results.xhr = median(rows.xhr);
  results.relay = median(rows.relay);
  results.fetch = median(rows.fetch);
  return results;
}

main().catch((e) => ({error: String(e.stack ?? e)})).then(async (results) => {
  await WasiWorker.run('save', {args: ['/out/results.json', JSON.stringify(results)]});
  log('saved');
});
