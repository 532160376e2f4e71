// Page-supplied modules in a page of a web build, for engines Playwright does not drive
// (WebKitGTK in a pywebview window; tests/test_page_modules.py). POSTs its findings to /results.
'use strict';

const text = (bytes) => new TextDecoder().decode(bytes);

function ended(worker) {
  const messages = [];
  worker.addEventListener('message', (e) => messages.push(e.data));
  return new Promise((resolve) => worker.addEventListener('exit', (e) => {
    resolve({code: e.code, kind: e.error?.kind ?? null, messages});
  }, {once: true}));
}

async function checks() {
  const out = {isolated: crossOriginIsolated};
  const before = WasiService.compiles;
  const svc = await WasiWorker.register('mods/env_args.wasm');
  const runs = [];
  for (let i = 0; i < 20; i++) runs.push(await ended(svc.spawn({args: [`n${i}`]})));
  out.spawns = {compiles: WasiService.compiles - before,
    ok: runs.every((r, i) => r.code === 0 && r.messages[1] === `arg[1]=n${i}`)};
  const reader = await WasiWorker.register('mods/readfile.wasm');
  out.blob = (await reader.run({args: ['/in/b'], vfs: {'/in/b': new Blob(['from a blob'])}})).stdout;
  let feed;
  const source = new ReadableStream({start: (c) => { feed = c; }});
  const received = [];
  const sink = new WritableStream({write: (c) => { received.push(text(c)); }});
  const w = new WasiWorker('mods/copyfile.wasm', {args: ['/in/slow', '/out/copy'],
    vfs: {'/in/slow': source, '/out/copy': sink}});
  const copy = ended(w);
  feed.enqueue(new TextEncoder().encode('first '));
  while (received.length < 1) await new Promise((r) => setTimeout(r, 10));
  feed.enqueue('second');
  feed.close();
  out.streams = {...await copy, received};
  try {
    await WasiWorker.register('mods/not-wasm.txt');
    out.notWasm = null;
  } catch (e) {
    out.notWasm = e.kind;
  }
  return out;
}

checks().then((r) => r, (e) => ({failed: String(e?.stack ?? e)}))
  .then((r) => fetch('/results', {method: 'POST', body: JSON.stringify(r)}));
