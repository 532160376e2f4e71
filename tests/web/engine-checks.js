// The browser engine's key behaviours in one page that POSTs its findings to /results, for
// engines Playwright does not drive (WebKitGTK in a pywebview window; tests/test_web_engine.py).
import * as engine from '/engine/wasi-engine.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const wasm = async (name) => (await fetch(`/wasm/${name}.wasm`)).arrayBuffer();
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(name, options = {}) {
  const inst = new engine.WasiInstance({name, module: await wasm(name), args: [name],
    stdin: 'stream', window: 1 << 20, ...options});
  const s = {inst, out: '', chunks: [], exit: null};
  inst.onstdout = (b) => { s.chunks.push(b); s.out += dec.decode(b); inst.ack(b.length); };
  s.exited = new Promise((resolve) => { inst.onexit = (r) => { s.exit = r; resolve(r); }; });
  return s;
}

const checks = {
  async blockingStdin() {
    const s = await start('echo_lines');
    await pause(300);
    const before = s.out;
    await s.inst.writeStdin(enc.encode('hello\n'));
    s.inst.closeStdin();
    const exit = await s.exited;
    return {before, out: s.out, code: exit.code};
  },
  async bigStdin() {
    const s = await start('echo_stream');
    const data = new Uint8Array(3 * (1 << 20) + 7).map((_, i) => (i * 13) & 255);
    await s.inst.writeStdin(data);
    s.inst.closeStdin();
    await s.exited;
    const out = engine.concat(s.chunks);
    return {same: out.length === data.length && out.every((b, i) => b === data[i])};
  },
  async sleep() {
    const s = await start('sleep_poll', {args: ['sleep_poll', '200', '100']});
    await s.exited;
    return {out: s.out};
  },
  async trap() {
    return (await engine.runWasi({name: 'trap', module: await wasm('trap')})).error;
  },
  async memory() {
    const r = await engine.runWasi({name: 'bomb', module: await wasm('membomb'),
      limits: {memory: 32 * 1024 * 1024}});
    return {error: r.error, stderr: dec.decode(r.stderr)};
  },
  async terminate() {
    const s = await start('loop');
    while (!s.out) await pause(10);
    s.inst.terminate();
    return (await s.exited).error;
  },
};

const results = {isolated: crossOriginIsolated};
for (const [name, check] of Object.entries(checks)) {
  try {
    results[name] = await check();
  } catch (e) {
    results[name] = {failed: String(e)};
  }
}
fetch('/results', {method: 'POST', body: JSON.stringify(results)});
