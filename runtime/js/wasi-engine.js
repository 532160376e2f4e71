/*
 * wvwasi browser engine, part 3 of 3: the page's side. Starts one dedicated Web Worker
 * (wasi-worker.js) per WASI instance, feeds its stdin, relays its output, enforces
 * limits.timeout and reports how it ended in the native host's words (docs/architecture.md:
 * Exited / ServiceError kinds trap, timeout, memory, terminated, start).
 *
 *   import {WasiInstance, runWasi, fetchTree} from './wasi-engine.js';
 *   const inst = new WasiInstance({name: 'echo', module: bytes, args: ['echo'], stdin: 'stream'});
 *   inst.onstdout = (bytes) => ...; inst.onexit = ({code, error}) => ...;
 *   inst.writeStdin(bytes); inst.closeStdin();
 *
 * Blocking stdin needs SharedArrayBuffer, so a page that is not crossOriginIsolated can only run
 * instances whose whole stdin is given up front (`stdin: Uint8Array`): `stdin: 'stream'` then
 * throws an error of kind "isolation". Docs: docs/web.md.
 */

import {limitMemory} from './wasi-core.js';
import {REPLY_BYTES} from './wasi-hostfs.js';
import {concat} from './wasi-wire.js';

export {concat}; // for pages that use the engine directly

const WORKER_URL = new URL('./wasi-worker.js', import.meta.url);
const RING = 1 << 20; // stdin bytes buffered between page and worker (a power of two)
const CTRL_BYTES = 32;
const [W, RD, CLOSED, SEQ, WANTS_ROOM] = [0, 1, 2, 3, 4];

/** Whether this page can give workers blocking stdin (SharedArrayBuffer + Atomics.wait). */
export function canBlock() {
  return globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
}

/** An engine failure before the guest ran; `kind` is a WasiError kind. */
export class EngineError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind;
  }
}

// wasmtime's words for the traps browsers name differently (so the page sees the same text
// under both hosts); checked in order against the browser's message, case-insensitively.
const TRAPS = [
  [/unreachable/, 'wasm `unreachable` instruction executed'],
  [/out of bounds memory|memory access out of bounds/, 'out of bounds memory access'],
  [/divi(de|sion) by zero|remainder by zero/, 'integer divide by zero'],
  [/integer overflow|float unrepresentable|conversion/, 'integer overflow'],
  [/call stack|stack size|recursion/, 'call stack exhausted'],
  [/signature|indirect call type/, 'indirect call type mismatch'],
  [/table|null function|uninitialized|call_indirect/, 'undefined element: out of bounds table access'],
];

function trapText(detail, stackOverflow) {
  if (stackOverflow) return 'wasm trap: call stack exhausted';
  const lower = detail.toLowerCase();
  for (const [pattern, text] of TRAPS) if (pattern.test(lower)) return `wasm trap: ${text}`;
  return detail;
}

/** The ServiceError the native host would report: {kind, message}. */
function serviceError(name, error, limits) {
  if (error.kind === 'trap') {
    const text = trapText(error.detail, error.stackOverflow);
    const limit = limits.memory;
    if (limit && limit - error.memoryUsed < Math.min(Math.floor(limit / 8), 8 << 20)) {
      return {kind: 'memory', message: `service '${name}' hit its limits.memory of ` +
        `${Math.floor(limit / 2 ** 20)} MiB (using ${Math.floor(error.memoryUsed / 2 ** 20)} MiB) ` +
        `and then failed: ${text}`};
    }
    return {kind: 'trap', message: `service '${name}' trapped: ${text}`};
  }
  return {kind: 'start', message: `service '${name}' failed to start: ${error.detail}`};
}

const OUT_RING = 256 << 10; // output ring bytes (a power of two)
const [OUT_W, OUT_RD, OUT_IDLE] = [0, 1, 2];

/** The page's end of the worker's output ring (layout and records: Output in wasi-worker.js). */
class OutputRing {
  constructor() {
    this.shared = new SharedArrayBuffer(16 + OUT_RING);
    this.ctrl = new Int32Array(this.shared, 0, 4);
    this.data = new Uint8Array(this.shared, 16);
    this.allowed = 0; // ordered messages received whose barrier is not consumed yet
    Atomics.store(this.ctrl, OUT_IDLE, 1); // the first record wakes the page
  }

  #read(at, n) {
    const start = at & (OUT_RING - 1);
    const first = Math.min(n, OUT_RING - start);
    const out = new Uint8Array(n);
    out.set(this.data.subarray(start, start + first));
    out.set(this.data.subarray(0, n - first), first);
    return out;
  }

  /** Hand each record to `deliver(type, bytes)` until the ring is empty, a barrier is consumed
   * (true) or one is reached whose message has not arrived; `stop()` ends it early. */
  drain(deliver, stop) {
    const ctrl = this.ctrl;
    Atomics.store(ctrl, OUT_IDLE, 1); // a record written from now on posts a wake
    let rd = Atomics.load(ctrl, OUT_RD);
    let barrier = false;
    while (!stop() && rd !== Atomics.load(ctrl, OUT_W)) {
      const head = this.#read(rd, 5);
      const length = new DataView(head.buffer).getUint32(1, true);
      if (head[0] === 0) {
        if (!this.allowed) break;
        this.allowed--;
        rd = (rd + 5) | 0;
        barrier = true;
        break;
      }
      const bytes = this.#read(rd + 5, length);
      rd = (rd + 5 + length) | 0;
      Atomics.store(ctrl, OUT_RD, rd);
      deliver(head[0], bytes);
    }
    Atomics.store(ctrl, OUT_RD, rd);
    Atomics.notify(ctrl, OUT_RD);
    return barrier;
  }
}

/** The page's end of the shared stdin ring (layout in wasi-worker.js). */
class StdinRing {
  constructor() {
    this.shared = new SharedArrayBuffer(CTRL_BYTES + RING);
    this.ctrl = new Int32Array(this.shared, 0, 8);
    this.data = new Uint8Array(this.shared, CTRL_BYTES);
    this.pending = []; // chunks waiting for room, with their resolve callbacks
    this.closing = false;
  }
  write(bytes) {
    return new Promise((resolve) => {
      this.pending.push({bytes, resolve});
      this.pump();
    });
  }
  close() {
    this.closing = true;
    this.pump();
  }
  /** Move what fits into the ring; called again when the worker reports room. */
  pump() {
    const ctrl = this.ctrl;
    while (this.pending.length) {
      const head = this.pending[0];
      const w = Atomics.load(ctrl, W);
      const free = RING - ((w - Atomics.load(ctrl, RD)) | 0);
      if (free <= 0) {
        Atomics.store(ctrl, WANTS_ROOM, 1);
        // the worker may have read everything between our check and the flag: look again
        if (RING - ((w - Atomics.load(ctrl, RD)) | 0) <= 0) return;
        continue;
      }
      const n = Math.min(free, head.bytes.length);
      const at = w & (RING - 1);
      const first = Math.min(n, RING - at); // the ring may wrap once
      this.data.set(head.bytes.subarray(0, first), at);
      this.data.set(head.bytes.subarray(first, n), 0);
      Atomics.store(ctrl, W, (w + n) | 0);
      Atomics.add(ctrl, SEQ, 1);
      Atomics.notify(ctrl, SEQ);
      if (n === head.bytes.length) {
        this.pending.shift();
        head.resolve();
      } else {
        head.bytes = head.bytes.subarray(n);
      }
    }
    if (this.closing && !Atomics.load(ctrl, CLOSED)) {
      Atomics.store(ctrl, CLOSED, 1);
      Atomics.add(ctrl, SEQ, 1);
      Atomics.notify(ctrl, SEQ);
    }
  }
}

/** Everything a `new WasiInstance` takes; see the file comment. */
export class WasiInstance {
  /**
   * @param {object} o
   * @param {string} o.name  the service name used in error messages
   * @param {WebAssembly.Module | ArrayBuffer | Uint8Array} o.module
   * @param {string[]} [o.args]  argv including argv[0]
   * @param {[string, string][]} [o.env]
   * @param {{guest: string, mode: 'ro'|'rw', entries: object[], persist?: boolean}[]} [o.preopens]
   * @param {'stream' | Uint8Array} [o.stdin]  'stream': fed by writeStdin (needs isolation)
   * @param {{memory?: number, timeout?: number}} [o.limits]  bytes, seconds
   * @param {string[]} [o.dump]  preopen guest paths whose final trees `onexit` gets
   * @param {(ReadableStream | WritableStream)[]} [o.pipes]  the page's ends of the `pipes` the
   *   worker gets (see wasi-worker.js); reading a ReadableStream needs isolation
   * @param {number} [o.window]  pause the guest's output while this many bytes are not yet
   *   `ack()`ed (needs isolation; default: never pause)
   */
  constructor({name, module, args = [], env = [], preopens = [], stdin = new Uint8Array(0),
    limits = {}, dump = [], window = 0, pipes = []}) {
    this.name = name;
    this.limits = limits;
    this.onstdout = null;
    this.onstderr = null;
    this.onexit = null;
    this.onsync = null; // (guest, entries): a `persist` preopen changed (see wasi-core.js)
    this.done = false;
    let stdinSpec;
    if (stdin === 'stream') {
      if (!canBlock()) {
        throw new EngineError(`service '${name}' needs a cross-origin isolated page for its ` +
          'stdin (serve the page with Cross-Origin-Opener-Policy: same-origin and ' +
          'Cross-Origin-Embedder-Policy: require-corp; see docs/web.md)', 'isolation');
      }
      this.ring = new StdinRing();
      stdinSpec = {shared: this.ring.shared};
    } else {
      this.ring = null;
      stdinSpec = {bytes: stdin};
    }
    this.worker = new Worker(WORKER_URL, {type: 'module', name: `wasi:${name}`});
    this.worker.onmessage = (e) => this.#receive(e.data);
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.#finish({code: null, error: {kind: 'start',
        message: `service '${name}' failed to start: ${e.message || 'the engine did not load'}`}});
    };
    preopens = this.#hostFolders(preopens);
    const moduleData = module instanceof WebAssembly.Module ? module
      : module instanceof ArrayBuffer ? module.slice(0)
      : module.buffer.slice(module.byteOffset, module.byteOffset + module.byteLength);
    const transfer = moduleData instanceof ArrayBuffer ? [moduleData] : [];
    const pipeSpecs = this.#pipes(pipes);
    this.held = window && canBlock() ? new Int32Array(new SharedArrayBuffer(4)) : null;
    this.out = canBlock() ? new OutputRing() : null;
    this.worker.postMessage({module: moduleData, args, env, preopens, stdin: stdinSpec,
      memoryLimit: limits.memory ?? null, dump, output: this.held?.buffer ?? null, window,
      pipes: pipeSpecs, ring: this.out?.shared ?? null},
    transfer);
    if (limits.timeout) {
      this.timer = setTimeout(() => this.#stop({kind: 'timeout',
        message: `service '${name}' ran past its limits.timeout of ${limits.timeout} s`}),
      limits.timeout * 1000);
    }
  }

  /** Start feeding each ReadableStream into its ring and keep a writer of each WritableStream;
   * returns what the worker gets. A stream that fails stops the instance (kind "io"). */
  #pipes(pipes) {
    this.sinks = [];
    return pipes.map((p, index) => {
      const spec = {preopen: p.preopen, path: p.path};
      if (p.stream instanceof WritableStream) {
        this.sinks[index] = p.stream.getWriter();
        return {...spec, sink: true};
      }
      if (!canBlock()) {
        throw new EngineError(`service '${this.name}' needs a cross-origin isolated page to ` +
          `read the stream at ${p.guest} (see docs/web.md)`, 'isolation');
      }
      const ring = new StdinRing();
      const reader = p.stream.getReader();
      this.readers = [...(this.readers ?? []), reader];
      const pump = async () => {
        for (;;) {
          const {done, value} = await reader.read();
          if (done || this.done) break;
          const bytes = typeof value === 'string' ? new TextEncoder().encode(value)
            : new Uint8Array(ArrayBuffer.isView(value) ? value.buffer.slice(value.byteOffset,
              value.byteOffset + value.byteLength) : value);
          await ring.write(bytes);
        }
        ring.close();
      };
      pump().catch((e) => this.#stop({kind: 'io', message:
        `service '${this.name}': the stream for ${p.guest} failed: ${e?.message ?? e}`}));
      this.rings = [...(this.rings ?? []), ring];
      return {...spec, shared: ring.shared};
    });
  }

  /** Raw bytes to the guest's stdin; resolves once they are in the ring. */
  writeStdin(bytes) {
    if (!this.ring) throw new EngineError(`service '${this.name}' has fixed stdin`, 'invalid');
    if (this.done) return Promise.resolve();
    return this.ring.write(bytes);
  }

  closeStdin() { this.ring?.close(); }

  /** The page is done with `bytes` of output: a guest paused by `window` may go on. */
  ack(bytes) {
    if (!this.held || !bytes) return;
    Atomics.sub(this.held, 0, bytes);
    Atomics.notify(this.held, 0);
  }

  /** Stop now: `onexit` gets {code: null, error: {kind: 'terminated'}}; `reason` completes
   * "service 'x' was …" as in the native host. */
  terminate(reason = 'terminated') {
    this.#stop({kind: 'terminated', message: `service '${this.name}' was ${reason}`});
  }

  /** Stop now with `error` ({kind, message}) as how it ended (say, an output limit broken). */
  fail(error) {
    this.#stop(error);
  }

  #stop(error) {
    if (this.done) return;
    this.worker.terminate();
    this.#finish({code: null, error});
  }

  /** Host folders (`{host: true}` preopens, desktop app only): each gets a shared reply buffer
   * the Worker waits on; `onfs(index, body)` relays its calls, `fsReply` answers them. */
  #hostFolders(preopens) {
    this.hostReplies = [];
    return preopens.map((p) => {
      if (!p.host) return p;
      if (!canBlock()) {
        throw new EngineError(`service '${this.name}': host folders need a cross-origin ` +
          'isolated page (the app\'s pages are)', 'isolation');
      }
      const shared = new SharedArrayBuffer(8 + REPLY_BYTES);
      this.hostReplies.push(shared);
      return {guest: p.guest, mode: p.mode, host: {shared, index: this.hostReplies.length - 1}};
    });
  }

  /** Answer the pending call on host folder `index` with `reply` bytes (null: it failed). */
  fsReply(index, reply) {
    const shared = this.hostReplies[index];
    const ctrl = new Int32Array(shared, 0, 2);
    if (reply && reply.byteLength <= REPLY_BYTES) {
      new Uint8Array(shared, 8, reply.byteLength).set(reply);
      ctrl[1] = reply.byteLength;
    } else {
      ctrl[1] = -1;
    }
    Atomics.store(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
  }

  /** Dispatch what the output ring holds (see OutputRing.drain). */
  #drain() {
    return this.out?.drain((type, bytes) => (type === 1 ? this.onstdout : this.onstderr)?.(bytes),
      () => this.done) ?? false;
  }

  /** A message the worker posted in order with its ring records: what it wrote before first. */
  #ordered(dispatch) {
    if (this.out) {
      this.out.allowed++;
      this.#drain();
    }
    if (!this.done) dispatch();
    this.#drain();
  }

  #receive(msg) {
    if (this.done) return;
    if (msg.type === 'fs') {
      this.onfs?.(msg.index, msg.body);
      return;
    }
    if (msg.type === 'wake') this.#drain();
    else if (msg.type === 'stdout') this.#ordered(() => this.onstdout?.(msg.data));
    else if (msg.type === 'stderr') this.#ordered(() => this.onstderr?.(msg.data));
    else if (msg.type === 'room') for (const r of [this.ring, ...(this.rings ?? [])]) r?.pump();
    else if (msg.type === 'pipe') this.sinks[msg.index]?.write(msg.data).catch(() => {});
    else if (msg.type === 'sync') this.#ordered(() => this.onsync?.(msg.guest, msg.entries));
    else if (msg.type === 'exit') {
      this.#drain(); // everything the guest wrote comes before its exit
      if (this.done) return;
      this.worker.terminate();
      const error = msg.error ? serviceError(this.name, msg.error, this.limits) : null;
      this.#finish({code: msg.code, error, trees: msg.trees});
    }
  }

  #finish(result) {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    for (const r of this.readers ?? []) r.cancel().catch(() => {});
    for (const w of this.sinks ?? []) {
      if (!w) continue;
      (result.error ? w.abort(new Error(result.error.message)) : w.close()).catch(() => {});
    }
    this.onexit?.({trees: {}, ...result});
  }
}

/** Compile a service once for many instances, its memory capped at `memoryLimit` bytes. */
export function compileService(bytes, memoryLimit) {
  const data = new Uint8Array(bytes);
  return WebAssembly.compile(memoryLimit ? limitMemory(data, memoryLimit) : data);
}

/** Run to the end with fixed stdin: {exitCode, stdout, stderr (Uint8Array), error, trees}. */
export function runWasi(options) {
  return new Promise((resolve) => {
    const out = [];
    const err = [];
    const inst = new WasiInstance({...options, stdin: options.stdin ?? new Uint8Array(0)});
    inst.onstdout = (b) => out.push(b);
    inst.onstderr = (b) => err.push(b);
    inst.onexit = ({code, error, trees}) => resolve({exitCode: code, stdout: concat(out),
      stderr: concat(err), error, trees});
  });
}

/**
 * A read-only tree served as static files. `indexUrl` is a JSON file
 * `{base: 'folder/', entries: [{path, type: 'file'|'dir'|'symlink', target?}]}` (what
 * `wvwasi build --format web` writes); each file is fetched from `base` + its path, relative to
 * the index. Returns the entries, files with their `data`.
 */
export async function fetchTree(indexUrl) {
  const url = new URL(indexUrl, location.href);
  const {base, entries} = await (await fetchOk(url)).json();
  const root = new URL(base, url);
  return Promise.all(entries.map(async (entry) => {
    if (entry.type !== 'file') return entry;
    const file = new URL(entry.path.split('/').map(encodeURIComponent).join('/'), root);
    return {...entry, data: await (await fetchOk(file)).arrayBuffer()};
  }));
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new EngineError(`${url}: HTTP ${response.status}`, 'start');
  return response;
}
