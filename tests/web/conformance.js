// Runs every wasi-testsuite program listed in /cases.json through the browser engine, one at a
// time, and POSTs the results to /results (tests/webwasi.py serves both).
import {runWasi, fetchTree} from '/engine/wasi-engine.js';

const decoder = new TextDecoder();
const log = document.getElementById('log');

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

async function runCase(c) {
  const preopens = c.root ? [{guest: '/', mode: 'rw', entries: await fetchTree(c.root)}] : [];
  const module = await (await fetch(c.wasm)).arrayBuffer();
  const r = await runWasi({name: c.id, module, args: c.args, env: c.env, preopens,
    limits: {timeout: c.timeout}, dump: c.root ? ['/'] : []});
  const files = (r.trees['/'] ?? []).map((e) => e.type === 'file'
    ? {path: e.path, type: e.type, data: base64(e.data)} : e);
  return {id: c.id, exitCode: r.exitCode, stdout: decoder.decode(r.stdout),
    stderr: decoder.decode(r.stderr), error: r.error, files};
}

async function main() {
  const cases = await (await fetch('/cases.json')).json();
  const results = [];
  for (const c of cases) {
    try {
      results.push(await runCase(c));
    } catch (e) {
      results.push({id: c.id, exitCode: null, stdout: '', stderr: '',
        error: {kind: 'page', message: String(e)}, files: []});
    }
    log.textContent += `${c.id}: ${results.at(-1).exitCode}\n`;
  }
  await fetch('/results', {method: 'POST', body: JSON.stringify({
    crossOriginIsolated: globalThis.crossOriginIsolated, userAgent: navigator.userAgent, results})});
}

main().catch((e) => fetch('/results', {method: 'POST', body: JSON.stringify({fatal: String(e)})}));
