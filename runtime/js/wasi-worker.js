/*
 * wvwasi browser engine, part 2 of 3: the dedicated Web Worker one WASI instance runs in.
 *
 * Started by wasi-engine.js with one `start` message:
 *   {module: WebAssembly.Module | ArrayBuffer, args, env,
 *    preopens: [{guest, mode, entries, persist?} | {guest, mode, host: {shared, index}}],
 *    stdin: {shared: SharedArrayBuffer} | {bytes: Uint8Array} | null, memoryLimit: bytes | null,
 *    output: SharedArrayBuffer | null (bytes of output the page has not acknowledged), window,
 *    ring: SharedArrayBuffer | null (the output ring: see Output),
 *    dump: [guest paths whose trees to send back at exit],
 *    pipes: [{preopen, path, shared: SharedArrayBuffer} | {preopen, path, sink: true}]}
 * (`pipes`: files of preopen number `preopen` that the page streams: read from a shared ring like
 * stdin's, or written out as {type: 'pipe', index, data}),
 * and answers with {type: 'wake'} (records in the output ring), {type: 'stdout'|'stderr', data}
 * (without a ring, or a write too big for it), {type: 'room'} (stdin ring has space again),
 * {type: 'sync', guest, entries} (a `persist` preopen's whole tree after it changed),
 * {type: 'fs', index, body} (a call on a host folder, answered in its `shared`: wasi-hostfs.js),
 * and a last {type: 'exit', code, error: {kind, detail} | null, trees}.
 * Blocking: stdin reads and poll_oneoff wait with Atomics.wait on the shared stdin ring (see
 * StdinRing in wasi-engine.js for its layout); sleeps use Atomics.wait on a private cell.
 */
import {Wasi, buildTree, dumpTree, limitMemory} from './wasi-core.js';
import {HostFolder} from './wasi-hostfs.js';

const CTRL = 16; // bytes of control words before the ring's data
const W = 0; // total bytes written (wraps)
const RD = 1; // total bytes read (wraps)
const CLOSED = 2;
const SEQ = 3; // bumped on every write and on close: what a reader waits on
const WANTS_ROOM = 4; // the page has more to write once there is room

/** Blocking reads from the page's shared ring. */
class SharedStdin {
  constructor(shared) {
    this.ctrl = new Int32Array(shared, 0, 8);
    this.data = new Uint8Array(shared, CTRL * 2);
    this.mask = this.data.length - 1;
  }
  #available() {
    return (Atomics.load(this.ctrl, W) - Atomics.load(this.ctrl, RD)) | 0;
  }
  ready(timeoutMs) {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const seq = Atomics.load(this.ctrl, SEQ);
      if (Atomics.load(this.ctrl, CLOSED) || this.#available() > 0) return true;
      const left = until - performance.now();
      if (left <= 0) return false;
      Atomics.wait(this.ctrl, SEQ, seq, left === Infinity ? undefined : left);
    }
  }
  ended() {
    return Atomics.load(this.ctrl, CLOSED) !== 0 && this.#available() <= 0;
  }
  read(max) {
    this.ready(Infinity);
    const n = Math.min(max, this.#available());
    if (n <= 0) return new Uint8Array(0); // closed and drained: EOF
    const out = new Uint8Array(n);
    const start = Atomics.load(this.ctrl, RD);
    const at = start & this.mask;
    const first = Math.min(n, this.data.length - at); // the ring may wrap once
    out.set(this.data.subarray(at, at + first));
    out.set(this.data.subarray(0, n - first), first);
    Atomics.store(this.ctrl, RD, (start + n) | 0);
    if (Atomics.exchange(this.ctrl, WANTS_ROOM, 0)) postMessage({type: 'room'});
    return out;
  }
}

/** Fixed stdin (a task's whole input, known up front): no blocking needed. */
class FixedStdin {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }
  ready() { return true; }
  ended() { return this.pos >= this.bytes.length; }
  read(max) {
    const out = this.bytes.slice(this.pos, this.pos + max);
    this.pos += out.length;
    return out;
  }
}

/** Output to the page. With a shared `ring` (wasi-engine.js OutputRing: Int32 [W, RD, IDLE],
 * then the data), each write is a record `[u8 type][u32 LE length][bytes]` in the ring, and only
 * the first record the page has not yet been woken for costs a postMessage ({type: 'wake'}):
 * pipelined small writes share one. A write of more than half the ring, and a `sync`, are posted
 * as messages after a barrier record (type 0) at their place in the ring, so the page keeps
 * their order. Without a ring (no shared memory), each write is one postMessage. */
class Output {
  constructor(ring) {
    this.ctrl = ring ? new Int32Array(ring, 0, 4) : null;
    this.data = ring ? new Uint8Array(ring, 16) : null;
  }

  write(type, data) {
    if (!this.ctrl || RECORD + data.length > this.data.length / 2) {
      this.post({type, data}, [data.buffer]);
      return;
    }
    this.#record(TYPES[type], data);
  }

  /** A message in order with the ring's records (see the class comment). */
  post(msg, transfer = []) {
    if (this.ctrl) this.#record(BARRIER, new Uint8Array(0));
    postMessage(msg, transfer);
  }

  #record(type, data) {
    const {ctrl} = this;
    const size = this.data.length;
    const need = RECORD + data.length;
    let w = Atomics.load(ctrl, OUT_W);
    for (;;) { // wait for room: the page frees it as it dispatches (back-pressure)
      const rd = Atomics.load(ctrl, OUT_RD);
      if (size - ((w - rd) | 0) >= need) break;
      Atomics.wait(ctrl, OUT_RD, rd);
    }
    const head = new Uint8Array(RECORD);
    head[0] = type;
    new DataView(head.buffer).setUint32(1, data.length, true);
    this.#copy(head, w);
    this.#copy(data, w + RECORD);
    Atomics.store(ctrl, OUT_W, (w + need) | 0);
    if (Atomics.compareExchange(ctrl, OUT_IDLE, 1, 0) === 1) postMessage({type: 'wake'});
  }

  #copy(bytes, at) {
    const size = this.data.length;
    const start = at & (size - 1);
    const first = Math.min(bytes.length, size - start); // the ring may wrap once
    this.data.set(bytes.subarray(0, first), start);
    this.data.set(bytes.subarray(first), 0);
  }
}
const RECORD = 5;
const [OUT_W, OUT_RD, OUT_IDLE] = [0, 1, 2];
const BARRIER = 0;
const TYPES = {stdout: 1, stderr: 2};

/** Stdout or stderr; with a shared counter `shared`, first waits while `window` bytes or more
 * are unacknowledged by the page (back-pressure: a page that does not read pauses the guest, as
 * a full pipe does natively). One write may exceed the window when nothing is outstanding. */
function output(out, type, shared, window) {
  const held = shared ? new Int32Array(shared) : null;
  return (data) => {
    if (held) {
      for (let n; (n = Atomics.load(held, 0)) > 0 && n + data.length > window;) {
        Atomics.wait(held, 0, n);
      }
      Atomics.add(held, 0, data.length);
    }
    out.write(type, data);
  };
}

function sleeper() {
  if (typeof SharedArrayBuffer === 'function' && globalThis.crossOriginIsolated !== false) {
    const cell = new Int32Array(new SharedArrayBuffer(4));
    return (ms) => { Atomics.wait(cell, 0, 0, ms); };
  }
  return (ms) => { // no shared memory: a busy wait is the only way to block a Worker
    const until = performance.now() + ms;
    while (performance.now() < until) { /* sleep */ }
  };
}

/** The node at relative `path` under `dir`. */
function lookup(dir, path) {
  let node = dir;
  for (const part of path.split('/')) node = node.entries.get(part);
  return node;
}

// -- run ------------------------------------------------------------------------------------------

function run(msg) {
  let module = msg.module;
  if (!(module instanceof WebAssembly.Module)) {
    let bytes = new Uint8Array(module);
    if (msg.memoryLimit) bytes = limitMemory(bytes, msg.memoryLimit);
    module = new WebAssembly.Module(bytes);
  }
  const preopens = msg.preopens.map((p) => (p.host
    ? {guest: p.guest, mode: p.mode, host: new HostFolder(p.host, p.mode)}
    : {guest: p.guest, mode: p.mode, persist: !!p.persist, dir: buildTree(p.entries)}));
  (msg.pipes ?? []).forEach((pipe, index) => {
    const file = lookup(preopens[pipe.preopen].dir, pipe.path);
    if (pipe.shared) file.source = new SharedStdin(pipe.shared);
    else file.sink = (data) => postMessage({type: 'pipe', index, data}, [data.buffer]);
  });
  const stdin = msg.stdin?.shared ? new SharedStdin(msg.stdin.shared)
    : new FixedStdin(msg.stdin?.bytes ?? new Uint8Array(0));
  const out = new Output(msg.ring);
  const wasi = new Wasi({
    args: msg.args, env: msg.env, preopens, stdin,
    stdout: output(out, 'stdout', msg.output, msg.window),
    stderr: output(out, 'stderr', msg.output, msg.window),
    sleep: sleeper(),
    sync: (guest, entries) => out.post({type: 'sync', guest, entries}),
  });
  let instance;
  try {
    instance = new WebAssembly.Instance(module, wasi.imports);
  } catch (e) {
    return {code: null, error: {kind: 'start', detail: String(e.message ?? e)}};
  }
  let result;
  try {
    result = {code: wasi.start(instance), error: null};
  } catch (e) {
    const memory = instance.exports.memory;
    result = {code: null, error: {kind: 'trap', detail: String(e.message ?? e),
      memoryUsed: memory ? memory.buffer.byteLength : 0, stackOverflow: e instanceof RangeError}};
  }
  result.trees = {};
  for (const guest of msg.dump ?? []) {
    const at = preopens.findIndex((p) => p.guest === guest);
    if (at >= 0) result.trees[guest] = dumpTree(preopens[at].dir);
  }
  return result;
}

onmessage = (event) => {
  onmessage = null;
  let result;
  try {
    result = run(event.data);
  } catch (e) {
    result = {code: null, error: {kind: 'start', detail: String(e.message ?? e)}};
  }
  postMessage({type: 'exit', ...result});
};
