/*
 * wvwasi page API: the app's WASI services, used like Web Workers.
 *
 *   const w = new WasiWorker('resize', {args: ['--fast']});
 *   w.onmessage = (e) => show(e.data);
 *   w.postMessage(bytes);
 *   const {exitCode, stdout} = await WasiWorker.run('wc', {stdin: text});
 *
 * The wvwasi bridge serves this file at /__wvwasi/wvwasi.js, prefixed with the app's service list
 * and the protocol constants, and inserts its <script> tag into every HTML page it serves.
 * All workers share one WebSocket to the bridge. Docs: docs/page-api.md; types: wvwasi.d.ts.
 */
(() => {
  'use strict';
  if (globalThis.WasiWorker) return;

  const config = globalThis.__wvwasiConfig;
  if (!config) {
    throw new Error('wvwasi.js must be loaded from the wvwasi bridge at /__wvwasi/wvwasi.js');
  }
  delete globalThis.__wvwasiConfig;
  const wire = globalThis.__wvwasiWire; // wasi-wire.js, joined in front of this file
  delete globalThis.__wvwasiWire;

  const OP = config.ops;
  const WINDOW = config.window; // in-flight bytes per worker and direction before a CREDIT
  const MAX_FRAME = config.maxFrame;
  const HEADER = wire.HEADER; // u32 payload length, u8 op, u32 id
  const FRAME_TARGET = 1 << 20;
  const EMPTY = new Uint8Array(0);
  const encoder = new TextEncoder();
  // A leading U+FEFF is part of the message, not a byte order mark to drop.
  const decoder = new TextDecoder('utf-8', {ignoreBOM: true});
  const LONE_SURROGATE = /\p{Cs}/u;
  const SHORT_TEXT = 256; // characters (or bytes) up to which ASCII text skips TextEncoder/Decoder
  const SMALL_PAYLOAD = 1024; // bytes up to which payloads share buffers (`payloadRoom`)
  const ARENA = 64 * 1024;

  // The socket key: the bridge's launch redirect hands it over in the URL (`?wvwasi-key=`), the
  // page keeps it for this origin in sessionStorage, and the WebSocket presents it. The session
  // cookie alone (which other ports of 127.0.0.1 also receive) opens no socket.
  const KEY_PARAM = 'wvwasi-key';
  const socketKey = (() => {
    let key = null;
    try {
      const url = new URL(location.href);
      key = url.searchParams.get(KEY_PARAM);
      if (key !== null) {
        sessionStorage.setItem(KEY_PARAM, key);
        url.searchParams.delete(KEY_PARAM);
        history.replaceState(history.state, '', url.href);
      } else {
        key = sessionStorage.getItem(KEY_PARAM);
      }
    } catch {
      // no sessionStorage (an opaque origin): the socket will be refused and say why
    }
    return key ?? '';
  })();
  const SPAWN_OPTIONS = ['args', 'env', 'files', 'scratch', 'grants', 'outputs'];
  const RUN_OPTIONS = [...SPAWN_OPTIONS, 'stdin'];

  /** An error from a service or the bridge; `kind` says what happened (see wvwasi.d.ts). */
  class WasiError extends Error {
    constructor(message, kind, extra) {
      super(message);
      this.name = 'WasiError';
      this.kind = kind;
      if (extra) Object.assign(this, extra);
    }
  }

  /** Dispatched once when a worker has ended: `code` is its exit status (null if it did not exit). */
  class WasiExitEvent extends Event {
    constructor(code, error) {
      super('exit');
      this.code = code;
      this.error = error;
    }
  }

  /** A folder the user picked; pass it in `grants` to spawn a service with `user_grants`. */
  class DirectoryGrant {
    constructor(id, name, mode) {
      Object.defineProperty(this, 'id', {value: id});
      this.name = name;
      this.mode = mode;
      Object.freeze(this);
    }
  }

  // -- values -------------------------------------------------------------------------------------

  function describe(value) {
    if (value === null) return 'null';
    if (typeof value !== 'object') return typeof value;
    return value.constructor?.name ?? 'object';
  }

  function isBinary(value) {
    return value instanceof ArrayBuffer || ArrayBuffer.isView(value) ||
      (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer);
  }

  let arena = new ArrayBuffer(0); // shared by small payloads, ARENA bytes each
  let arenaUsed = 0;

  /** Room for `size` bytes of a record's payload. Small payloads are carved from a shared
   * buffer (one allocation per ARENA bytes instead of one per message; such a payload is copied
   * into its frame anyway); larger ones get a buffer of their own with room for their record
   * header in front (see `headerRoom`): a frame of just that record is sent without a copy. */
  function payloadRoom(size) {
    if (size > SMALL_PAYLOAD) return new Uint8Array(new ArrayBuffer(HEADER + size), HEADER);
    if (arenaUsed + size > arena.byteLength) {
      arena = new ArrayBuffer(ARENA);
      arenaUsed = 0;
    }
    const room = new Uint8Array(arena, arenaUsed, size);
    arenaUsed += size;
    return room;
  }

  /** A private copy of binary data, so later changes by the page do not alter what is sent. */
  function copyBytes(value) {
    const source = ArrayBuffer.isView(value)
      ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
      : new Uint8Array(value);
    const copy = payloadRoom(source.byteLength);
    copy.set(source);
    return copy;
  }

  /** Whether `payload` has a buffer of its own with the first HEADER bytes free. */
  function headerRoom(payload) {
    return payload.byteOffset === HEADER && payload.buffer.byteLength === HEADER + payload.byteLength;
  }

  /** UTF-8 of a string; a lone surrogate (which UTF-8 cannot carry) is a TypeError, not a
   * silent U+FFFD. ASCII text (one byte per character) is encoded straight into its
   * `payloadRoom`, twice as fast as `encode()` for large strings. */
  function encodeText(text, what) {
    checkText(text, what);
    const bytes = payloadRoom(text.length);
    if (text.length <= SHORT_TEXT) { // a plain loop beats the encoder's call for short text
      let i = 0;
      for (let c; i < text.length && (c = text.charCodeAt(i)) < 0x80; i++) bytes[i] = c;
      if (i === text.length) return bytes;
    } else if (encoder.encodeInto(text, bytes).read === text.length) {
      return bytes;
    }
    return encoder.encode(text);
  }

  /** UTF-8 `bytes` as a string (U+FFFD for invalid sequences, a leading BOM kept). */
  function decodeText(bytes) {
    if (bytes.length <= SHORT_TEXT) { // ASCII: one call instead of the decoder's
      let i = 0;
      while (i < bytes.length && bytes[i] < 0x80) i++;
      if (i === bytes.length) return String.fromCharCode.apply(null, bytes);
    }
    return decoder.decode(bytes);
  }

  function checkText(text, what) {
    if (LONE_SURROGATE.test(text)) {
      throw new TypeError(`${what} contains a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot carry`);
    }
  }

  function toBytes(value, what) {
    if (typeof value === 'string') return encodeText(value, what);
    if (isBinary(value)) return copyBytes(value);
    throw new TypeError(`${what} must be a string, an ArrayBuffer or a TypedArray, got ${describe(value)}`);
  }

  async function toBytesAsync(value, what) {
    if (typeof Blob !== 'undefined' && value instanceof Blob) {
      return new Uint8Array(await value.arrayBuffer());
    }
    return toBytes(value, what);
  }

  function checkData(value, what) {
    const ok = typeof value === 'string' || isBinary(value) ||
      (typeof Blob !== 'undefined' && value instanceof Blob);
    if (!ok) {
      throw new TypeError(`${what} must be a Blob, an ArrayBuffer, a TypedArray or a string, got ${describe(value)}`);
    }
  }

  function serviceInfo(name, what) {
    if (typeof name !== 'string') {
      throw new TypeError(`${what}: the service name must be a string, got ${describe(name)}`);
    }
    const info = Object.hasOwn(config.services, name) ? config.services[name] : undefined;
    if (!info) {
      const known = Object.keys(config.services).join(', ') || 'none';
      throw new WasiError(`no service named '${name}' in this app (services: ${known})`, 'lookup');
    }
    return info;
  }

  /** Check spawn/run options; returns the JSON spec and the files still to be read. */
  function requestSpec(name, options, allowed, what) {
    options ??= {};
    if (typeof options !== 'object') {
      throw new TypeError(`${what}: options must be an object, got ${describe(options)}`);
    }
    for (const key of Object.keys(options)) {
      if (!allowed.includes(key)) {
        throw new TypeError(`${what}: unknown option '${key}' (options: ${allowed.join(', ')})`);
      }
    }
    const spec = {service: name};
    const {args, env, files, scratch, grants, outputs} = options;
    if (args !== undefined) {
      if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) {
        throw new TypeError(`${what}: args must be an array of strings`);
      }
      args.forEach((a, i) => checkText(a, `${what}: args[${i}]`));
      spec.args = [...args];
    }
    if (env !== undefined) {
      if (env === null || typeof env !== 'object') {
        throw new TypeError(`${what}: env must be an object of strings, got ${describe(env)}`);
      }
      spec.env = Object.entries(env).map(([key, value]) => {
        if (typeof value !== 'string') {
          throw new TypeError(`${what}: env.${key} must be a string, got ${describe(value)}`);
        }
        checkText(key, `${what}: an env name`);
        checkText(value, `${what}: env.${key}`);
        return [key, value];
      });
    }
    if (scratch !== undefined) {
      if (typeof scratch !== 'boolean') throw new TypeError(`${what}: scratch must be a boolean`);
      spec.scratch = scratch;
    }
    if (grants !== undefined) {
      if (!Array.isArray(grants)) throw new TypeError(`${what}: grants must be an array`);
      spec.grants = grants.map((g) => grantSpec(g, what));
    }
    const fileList = [];
    if (files !== undefined) {
      if (files === null || typeof files !== 'object') {
        throw new TypeError(`${what}: files must be an object {guestPath: data}, got ${describe(files)}`);
      }
      for (const [path, value] of Object.entries(files)) {
        if (!path.startsWith('/')) {
          throw new TypeError(`${what}: files key '${path}' must be an absolute guest path like '/in/${path}'`);
        }
        checkText(path, `${what}: a files path`);
        checkData(value, `${what}: files['${path}']`);
        fileList.push([path, value]);
      }
    }
    const sinks = outputs === undefined ? null : outputList(outputs, what);
    if (sinks) spec.outputs = sinks.map(([path]) => path);
    return {spec, files: fileList, outputs: sinks};
  }

  /** `outputs`: ['/out/a'] (bytes collected into run()'s result) or {'/out/a': WritableStream},
   * as [path, stream | null]; paths must be clean (they come back as given). */
  function outputList(outputs, what) {
    const list = Array.isArray(outputs) ? outputs.map((path) => [path, null])
      : outputs !== null && typeof outputs === 'object' ? Object.entries(outputs) : null;
    if (!list) throw new TypeError(`${what}: outputs must be an array of guest paths or an object {guestPath: WritableStream}, got ${describe(outputs)}`);
    for (const [path, stream] of list) {
      const parts = typeof path === 'string' ? path.split('/') : [];
      if (parts.length < 3 || parts[0] !== '' || parts.slice(1).some((p) => p === '' || p === '.' || p === '..')) {
        throw new TypeError(`${what}: outputs path '${path}' must be a clean absolute guest file path inside a folder, like '/out/result.wav'`);
      }
      checkText(path, `${what}: an outputs path`);
      if (stream !== null && !(stream instanceof WritableStream)) {
        throw new TypeError(`${what}: outputs['${path}'] must be a WritableStream, got ${describe(stream)}`);
      }
    }
    return list;
  }

  /** Where a spawn's OUTPUT records go: each file's pieces into its WritableStream (closed at
   * exit; aborted if the instance failed or never wrote the file), or collected for run(). */
  class OutputSinks {
    constructor(list, name) {
      this.name = name;
      this.writers = new Map();
      this.chunks = new Map();
      this.seen = new Set();
      for (const [path, stream] of list) {
        if (stream) this.writers.set(path, stream.getWriter());
        else this.chunks.set(path, []);
      }
    }

    piece(buffer, start, length) {
      const [{path}, pos] = readJson(buffer, start);
      const bytes = new Uint8Array(buffer.slice(pos, start + length));
      this.seen.add(path);
      const writer = this.writers.get(path);
      if (writer) writer.write(bytes).catch(() => {});
      else this.chunks.get(path)?.push(bytes);
    }

    /** Close (or abort) the streams; the collected files as {path: Uint8Array}. */
    finish(error) {
      for (const [path, writer] of this.writers) {
        const reason = error ?? (this.seen.has(path) ? null
          : new WasiError(`service '${this.name}' did not write ${path}`, 'output'));
        (reason ? writer.abort(reason) : writer.close()).catch(() => {});
      }
      this.writers.clear();
      const files = {};
      for (const [path, chunks] of this.chunks) {
        if (this.seen.has(path)) files[path] = joinBytes(chunks);
      }
      return files;
    }
  }

  function joinBytes(chunks) {
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.byteLength;
    }
    return out;
  }

  function grantSpec(item, what) {
    const entry = item instanceof DirectoryGrant ? {grant: item} : item;
    if (!entry || typeof entry !== 'object' || !entry.grant || typeof entry.grant.id !== 'string') {
      throw new TypeError(`${what}: each grants item must be a DirectoryGrant from WasiWorker.requestDirectory() or {grant, guest, mode}`);
    }
    const guest = entry.guest ?? '/picked';
    if (typeof guest !== 'string' || !guest.startsWith('/')) {
      throw new TypeError(`${what}: a grant's guest must be an absolute path such as '/picked'`);
    }
    checkText(guest, `${what}: a grant's guest`);
    const spec = {grant: entry.grant.id, guest};
    if (entry.mode !== undefined) {
      if (entry.mode !== 'ro' && entry.mode !== 'rw') {
        throw new TypeError(`${what}: a grant's mode must be 'ro' or 'rw'`);
      }
      spec.mode = entry.mode;
    }
    return spec;
  }

  /** `u32 JSON length + JSON + blobs` as one payload (wasi-wire.js), within the bridge's limit. */
  function jsonPayload(obj, blobs = []) {
    const out = wire.jsonPayload(obj, blobs);
    if (out.byteLength + HEADER > MAX_FRAME) {
      const mib = (n) => (n / 1048576).toFixed(1);
      throw new WasiError(`the request is ${mib(out.byteLength)} MiB, over the bridge's ${mib(MAX_FRAME)} MiB limit: pass big inputs through stdin or a folder from requestDirectory()`, 'invalid');
    }
    return out;
  }

  /** The payload of a SPAWN or RUN record, once every file (and stdin) has been read. */
  async function requestPayload(spec, files, stdin) {
    const blobs = await Promise.all(files.map(([path, value]) => toBytesAsync(value, `files['${path}']`)));
    spec.files = files.map(([path], i) => [path, blobs[i].byteLength]);
    if (stdin !== undefined) {
      const bytes = await toBytesAsync(stdin, 'stdin');
      spec.stdin = bytes.byteLength;
      blobs.push(bytes);
    }
    return jsonPayload(spec, blobs);
  }

  /** [parsed JSON, offset after it] of a `u32 length + JSON + rest` payload. */
  function readJson(buffer, start) {
    const [json, rest] = wire.readJson(new Uint8Array(buffer, start));
    return [json, rest.byteOffset];
  }

  /** A FIFO that stays O(1) per operation with many thousands of entries. */
  class Queue {
    constructor() {
      this.items = [];
      this.head = 0;
    }
    get length() { return this.items.length - this.head; }
    push(item) { this.items.push(item); }
    peek() { return this.items[this.head]; }
    shift() {
      const item = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return item;
    }
    drainAll() {
      const rest = this.items.slice(this.head);
      this.items = [];
      this.head = 0;
      return rest;
    }
  }

  // -- the page's one connection to the bridge ----------------------------------------------------

  /** A site from `wvwasi build --format web` has no app to connect to: wasi-web.js plays the
   * bridge inside the page, behind this WebSocket-like object, loaded on first use (docs/web.md). */
  function localBridge(url = config.web.engine, ...extra) {
    const socket = {readyState: 0, onopen: null, onmessage: null, onclose: null};
    import(url).then((m) => m.serve(socket, config, ...extra), (e) => socket.onclose?.({
      code: 1011, reason: `the browser engine (${url}) did not load: ${e?.message ?? e}`}));
    return socket;
  }

  class Channel {
    /** `open()` returns a WebSocket or a WebSocket-like object played inside the page. */
    constructor(open, local) {
      this.open = open;
      this.local = local;
      this.ws = null;
      this.opened = false;
      this.endpoints = new Map(); // id -> WorkerLink | Request
      this.queue = []; // [op, id, payload] not yet written to the socket
      this.scheduled = false;
      this.nextId = 1;
      this.owing = new Set(); // links with output credit to return
      this.creditTimer = 0;
    }

    /** A new id for `endpoint`, when its first record is about to be sent: the bridge
     * requires SPAWN/RUN/PICK ids to increase along the connection. */
    add(endpoint) {
      const id = this.nextId++;
      this.endpoints.set(id, endpoint);
      this.connect();
      return id;
    }

    remove(id) {
      this.endpoints.delete(id);
    }

    connect() {
      if (this.ws) return;
      const ws = this.open();
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => {
        this.opened = true;
        this.flush();
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => this.lost(ws, event);
      this.ws = ws;
      this.opened = false;
    }

    send(op, id, payload) {
      this.queue.push([op, id, payload]);
      this.schedule();
    }

    schedule() {
      if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(() => this.flush());
      }
    }

    /** Return output credit soon: big amounts now, small ones with the next records the page
     * sends (a reply usually follows within the task), else after a timer. */
    creditSoon() {
      let urgent = false;
      for (const link of this.owing) urgent ||= link.owed >= WINDOW / 2;
      if (urgent) {
        this.schedule();
      } else if (!this.creditTimer) {
        this.creditTimer = setTimeout(() => {
          this.creditTimer = 0;
          this.flush();
        }, 0);
      }
    }

    /** Write every queued record (and owed credit), packed into as few frames as possible. */
    flush() {
      this.scheduled = false;
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      for (const link of this.owing) {
        const payload = link.takeCredit();
        if (payload) {
          this.queue.unshift([OP.CREDIT, link.id, payload]);
          this.owing.delete(link);
        }
      }
      if (this.creditTimer && !this.owing.size) { // the credit travels now: no timer task
        clearTimeout(this.creditTimer);
        this.creditTimer = 0;
      }
      const queue = this.queue;
      let next = 0;
      while (next < queue.length) {
        let end = next;
        let size = 0;
        while (end < queue.length) {
          const bytes = HEADER + queue[end][2].byteLength;
          if (end > next && size + bytes > FRAME_TARGET) break;
          size += bytes;
          end++;
        }
        const alone = end - next === 1 && headerRoom(queue[next][2]);
        const frame = alone ? new Uint8Array(queue[next][2].buffer) : new Uint8Array(size);
        ws.send(wire.writeRecords(frame, queue.slice(next, end)));
        next = end;
      }
      this.queue = [];
    }

    receive(buffer) {
      let reload = false;
      wire.readRecords(new Uint8Array(buffer), (op, id, start, length) => {
        if (op === OP.RELOAD) {
          reload = true;
          return false;
        }
        this.endpoints.get(id)?.receive(op, buffer, start, length);
      });
      if (reload) {
        location.reload();
        return;
      }
      if (this.owing.size) this.creditSoon();
    }

    lost(ws, event) {
      if (this.ws !== ws) return;
      this.ws = null;
      this.queue = [];
      const why = this.local ? event.reason : this.opened
        ? `the connection to the app's services closed (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`
        : `cannot reach the app's services at ws://${location.host}/__wvwasi/ws: open this page through the URL the app (or wvwasi serve) printed, which carries its launch token, and check that the app is still running`;
      const error = new WasiError(why, 'bridge');
      const endpoints = [...this.endpoints.values()];
      this.endpoints.clear();
      for (const endpoint of endpoints) endpoint.fail(error);
    }
  }

  const appChannel = new Channel(() => (config.web
    ? localBridge(undefined, (id) => webGrant(id))
    : new WebSocket(`ws://${location.host}/__wvwasi/ws?key=${encodeURIComponent(socketKey)}`)),
  !!config.web);

  // -- one worker's state on the channel ----------------------------------------------------------

  class WorkerLink {
    constructor(worker, name, info, channel = appChannel) {
      this.channel = channel;
      this.worker = worker;
      this.name = name;
      this.info = info;
      this.state = 'running'; // then 'terminated' (by the page) and/or 'ended'
      this.ready = false; // SPAWN sent: records may follow
      this.backlog = new Queue(); // [op, payload, cost, waiter] waiting for SPAWN or credit
      this.inflight = 0; // bytes sent and not yet credited by the bridge
      this.owed = 0; // output bytes consumed and not yet credited to the bridge
      this.stdoutCtl = null;
      this.stderrCtl = null;
      this.streams = {};
      this.stdinStream = null;
      this.outputs = null; // OutputSinks of a spawn with `outputs`
      this.id = 0; // given when the SPAWN is sent
      this.channel.connect();
    }

    start(payload) {
      payload.then((bytes) => {
        if (this.state !== 'running') return;
        this.id = this.channel.add(this);
        this.channel.send(OP.SPAWN, this.id, bytes);
        this.ready = true;
        this.drain();
      }, (error) => {
        const wasi = error instanceof WasiError ? error : new WasiError(String(error?.message ?? error), 'invalid');
        this.end(null, wasi);
      });
    }

    /** Queue a record behind earlier ones; SEND/STDIN wait for window space. */
    post(op, payload, waiter) {
      if (this.state !== 'running') {
        waiter?.reject(new WasiError(`worker '${this.name}' has ended`, 'exit'));
        return;
      }
      if (payload.byteLength + HEADER > MAX_FRAME) {
        throw new RangeError(`a message of ${payload.byteLength} bytes is over the bridge's ${MAX_FRAME} byte limit`);
      }
      const cost = op === OP.SEND || op === OP.STDIN ? payload.byteLength + HEADER : 0;
      if (this.ready && this.backlog.length === 0 && this.fits(cost)) {
        this.inflight += cost;
        this.channel.send(op, this.id, payload);
        waiter?.resolve();
        return;
      }
      this.backlog.push([op, payload, cost, waiter]);
    }

    fits(cost) {
      return cost === 0 || this.inflight === 0 || this.inflight + cost <= WINDOW;
    }

    drain() {
      if (!this.ready) return;
      while (this.backlog.length && this.fits(this.backlog.peek()[2])) {
        const [op, payload, cost, waiter] = this.backlog.shift();
        this.inflight += cost;
        this.channel.send(op, this.id, payload);
        waiter?.resolve();
      }
    }

    receive(op, buffer, start, length) {
      switch (op) {
        case OP.MESSAGE:
          this.message(buffer, start, length);
          this.owe(length + HEADER);
          break;
        case OP.STDERR: {
          const text = decoder.decode(new Uint8Array(buffer, start, length));
          console.warn(`[${this.name}] ${text}`);
          this.stderrCtl?.enqueue(encoder.encode(`${text}\n`));
          this.owe(length + HEADER);
          break;
        }
        case OP.CREDIT:
          this.inflight = Math.max(0, this.inflight - new DataView(buffer, start, 4).getUint32(0, true));
          this.drain();
          break;
        case OP.OUTPUT:
          this.outputs?.piece(buffer, start, length);
          break;
        case OP.EXIT: {
          const [{code, error}] = readJson(buffer, start);
          this.end(code, error ? new WasiError(error.message, error.kind) : null);
          break;
        }
        case OP.ERROR: {
          const [{kind, message}] = readJson(buffer, start);
          this.end(null, new WasiError(message, kind));
          break;
        }
        default:
          break;
      }
    }

    message(buffer, start, length) {
      const ipc = this.info.ipc;
      const data = ipc === 'lines'
        ? decodeText(new Uint8Array(buffer, start, length))
        : buffer.slice(start, start + length);
      if (this.stdoutCtl) {
        // a line as the page got it (invalid UTF-8 replaced, as the desktop host delivers it)
        const bytes = ipc === 'lines' ? encoder.encode(data) : new Uint8Array(buffer, start, length);
        this.stdoutCtl.enqueue(wire.encodeMessage(ipc, bytes));
      }
      if (this.state === 'running') {
        this.worker.dispatchEvent(new MessageEvent('message', {data}));
      }
    }

    owe(bytes) {
      this.owed += bytes;
      this.channel.owing.add(this);
    }

    /** A CREDIT payload for the output consumed, unless a stream the page reads from is full
     * (back-pressure: the credit waits for the stream's pull). */
    takeCredit() {
      const full = (ctl) => ctl !== null && ctl.desiredSize <= 0;
      if (!this.owed || full(this.stdoutCtl) || full(this.stderrCtl)) return null;
      const payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, this.owed, true);
      this.owed = 0;
      return payload;
    }

    stream(which) {
      this.streams[which] ??= new ReadableStream({
        start: (ctl) => {
          if (this.state === 'ended') ctl.close();
          else this[`${which}Ctl`] = ctl;
        },
        pull: () => this.channel.schedule(),
        cancel: () => {
          this[`${which}Ctl`] = null;
          this.channel.schedule();
        },
      }, new ByteLengthQueuingStrategy({highWaterMark: WINDOW}));
      return this.streams[which];
    }

    terminate() {
      if (this.state !== 'running') return;
      this.state = 'terminated';
      this.rejectBacklog(new WasiError(`worker '${this.name}' was terminated`, 'terminated'));
      if (this.ready) this.channel.send(OP.TERMINATE, this.id, EMPTY);
      else { // its SPAWN was never sent: the same exit as for a running one
        const error = new WasiError(`service '${this.name}' was terminated`, 'terminated');
        queueMicrotask(() => this.end(null, error));
      }
    }

    rejectBacklog(error) {
      for (const entry of this.backlog.drainAll()) entry[3]?.reject(error);
    }

    end(code, error) {
      if (this.state === 'ended') return;
      const byPage = this.state === 'terminated';
      this.state = 'ended';
      this.channel.remove(this.id);
      this.channel.owing.delete(this);
      this.rejectBacklog(error ?? new WasiError(`worker '${this.name}' has ended`, 'exit'));
      for (const ctl of [this.stdoutCtl, this.stderrCtl]) {
        try {
          ctl?.close();
        } catch {
          // already closed or cancelled by the reader
        }
      }
      this.stdoutCtl = this.stderrCtl = null;
      this.outputs?.finish(error ?? (byPage ? new WasiError(`worker '${this.name}' was terminated`, 'terminated') : null));
      if (error && !byPage) {
        this.worker.dispatchEvent(new ErrorEvent('error', {message: error.message, error}));
      }
      this.worker.dispatchEvent(new WasiExitEvent(code, error));
    }

    fail(error) {
      this.end(null, error);
    }
  }

  /** A pending `run` or `requestDirectory`: one reply settles it. */
  class Request {
    constructor(onReply, reject, channel = appChannel, outputs = null) {
      this.channel = channel;
      this.outputs = outputs; // OutputSinks: OUTPUT records come before the reply
      this.onReply = onReply;
      this.reject = reject;
      this.id = 0; // given when it is sent
      this.channel.connect();
    }

    send(op, payload) {
      this.id = this.channel.add(this);
      this.channel.send(op, this.id, payload);
    }

    receive(op, buffer, start, length) {
      if (op === OP.OUTPUT) {
        this.outputs?.piece(buffer, start, length);
        return;
      }
      this.channel.remove(this.id);
      if (op === OP.ERROR) {
        const [{kind, message}] = readJson(buffer, start);
        this.outputs?.finish(new WasiError(message, kind));
        this.reject(new WasiError(message, kind));
      } else {
        this.onReply(buffer, start, length);
      }
    }

    fail(error) {
      this.outputs?.finish(error);
      this.reject(error);
    }
  }

  // -- page-supplied modules (docs/page-api.md) ---------------------------------------------------

  // Their records go to the browser engine inside the page (wasi-page.js), never to the app: the
  // same protocol and answering code as a web build's services. What a record cannot carry (the
  // compiled module, vfs streams) waits in `pageJobs` under the name the record gives.
  const pageJobs = new Map();
  const pageChannel = new Channel(() => localBridge(config.web
    ? new URL('wasi-page.js', config.web.engine).href
    : new URL('/__wvwasi/wasi-page.js', location.href).href, pageJobs), true);
  let nextJob = 1;
  let compiles = 0; // WebAssembly compilations of page-supplied modules, for tests
  const SERVICE_TOKEN = Symbol('WasiService');
  const MODULE_OPTIONS = ['name', 'ipc'];
  const PAGE_SPAWN_OPTIONS = ['args', 'env', 'vfs', 'stdout', 'stderr', 'grants', 'preopens'];
  const PAGE_RUN_OPTIONS = ['args', 'env', 'vfs', 'stdin', 'grants', 'preopens'];

  /** Whether `source` is a page-supplied module rather than a manifest service name: a URL, a
   * WasiService, a WebAssembly.Module, bytes, or a string that cannot be a service name (those
   * match [a-z][a-z0-9_-]*, so a string with '/', '.' or ':' is a URL). */
  function isPageSource(source) {
    return source instanceof URL || source instanceof WasiService ||
      source instanceof WebAssembly.Module || isBinary(source) ||
      (typeof source === 'string' && /[/.:]/.test(source));
  }

  function sourceLabel(source) {
    if (typeof source === 'string' || source instanceof URL) return `'${source}'`;
    return describe(source);
  }

  function moduleName(source, name) {
    if (name !== undefined) return name;
    if (typeof source === 'string' || source instanceof URL) {
      const file = new URL(source, location.href).pathname.split('/').pop();
      return decodeURIComponent(file).replace(/\.wasm$/, '') || 'module';
    }
    return 'module';
  }

  function pick(options, keys) {
    return Object.fromEntries(keys.filter((k) => options?.[k] !== undefined).map((k) => [k, options[k]]));
  }

  function checkOptions(options, allowed, what) {
    if (options === undefined || options === null) return {};
    if (typeof options !== 'object') throw new TypeError(`${what}: options must be an object, got ${describe(options)}`);
    for (const key of Object.keys(options)) {
      if (!allowed.includes(key)) throw new TypeError(`${what}: unknown option '${key}' (options: ${allowed.join(', ')})`);
    }
    if (options.ipc !== undefined && !['lines', 'frames', 'stream'].includes(options.ipc)) {
      throw new TypeError(`${what}: ipc must be 'lines', 'frames' or 'stream'`);
    }
    if (options.name !== undefined && typeof options.name !== 'string') throw new TypeError(`${what}: name must be a string`);
    for (const key of ['stdout', 'stderr']) {
      if (options[key] !== undefined && !(options[key] instanceof WritableStream)) {
        throw new TypeError(`${what}: ${key} must be a WritableStream, got ${describe(options[key])}`);
      }
    }
    return options;
  }

  /** vfs: guest path -> ReadableStream | WritableStream | Blob | bytes | string, checked. */
  function vfsList(vfs, what) {
    if (vfs === undefined) return [];
    if (vfs === null || typeof vfs !== 'object') throw new TypeError(`${what}: vfs must be an object {guestPath: value}, got ${describe(vfs)}`);
    return Object.entries(vfs).map(([path, value]) => {
      if (!path.startsWith('/') || path.endsWith('/') || path.split('/').includes('..')) {
        throw new TypeError(`${what}: vfs key '${path}' must be an absolute guest file path like '/in/data.txt'`);
      }
      checkText(path, `${what}: a vfs path`);
      if (value instanceof ReadableStream || value instanceof WritableStream) return [path, value];
      checkData(value, `${what}: vfs['${path}']`);
      return [path, typeof value === 'string' || isBinary(value) ? toBytes(value, `vfs['${path}']`) : value];
    });
  }

  /** The page's streams in `vfs` that no instance will read or write (it was terminated or
   * failed before it started): read ends cancelled, write ends aborted with `reason`. */
  function releaseVfs(vfs, reason) {
    for (const [, value] of vfs) {
      if (value instanceof ReadableStream) value.cancel(reason).catch(() => {});
      else if (value instanceof WritableStream) value.abort(reason).catch(() => {});
    }
  }

  /** Host folders for a page-supplied module: `grants` (DirectoryGrant or {grant, guest, mode})
   * and `preopens` ('/guest' or {guest, mode}, naming `[page] preopens` of the manifest), as
   * [{spec: the MOUNT record's JSON, guest}]; their guest paths may not overlap `vfs` paths. */
  function hostList(options, vfs, what) {
    const list = [];
    if (options?.grants !== undefined) {
      if (!Array.isArray(options.grants)) throw new TypeError(`${what}: grants must be an array`);
      for (const g of options.grants) {
        const {grant, guest, mode} = grantSpec(g, what);
        list.push({spec: mode ? {grant, mode} : {grant}, guest});
      }
    }
    if (options?.preopens !== undefined) {
      if (!Array.isArray(options.preopens)) throw new TypeError(`${what}: preopens must be an array of guest paths of [page] preopens`);
      for (const p of options.preopens) {
        const entry = typeof p === 'string' ? {guest: p} : p;
        if (!entry || typeof entry.guest !== 'string' || (entry.mode !== undefined && entry.mode !== 'ro' && entry.mode !== 'rw')) {
          throw new TypeError(`${what}: each preopens item must be the guest path of a [page] preopens entry, or {guest, mode: 'ro'|'rw'}`);
        }
        checkText(entry.guest, `${what}: a preopen's guest`);
        list.push({spec: entry.mode ? {preopen: entry.guest, mode: entry.mode} : {preopen: entry.guest}, guest: entry.guest});
      }
    }
    const under = (a, b) => a === b || b === '/' || a.startsWith(b.replace(/\/$/, '') + '/');
    for (const [i, {guest}] of list.entries()) {
      if (!guest.startsWith('/') || guest.split('/').includes('..')) throw new TypeError(`${what}: host folder guest path '${guest}' must be absolute, without '..'`);
      for (const other of list.slice(0, i)) {
        if (under(guest, other.guest) || under(other.guest, guest)) throw new TypeError(`${what}: host folders '${other.guest}' and '${guest}' overlap`);
      }
      for (const [path] of vfs) {
        if (under(path, guest)) throw new TypeError(`${what}: vfs path '${path}' lies inside host folder '${guest}'`);
      }
    }
    return list;
  }

  /** A host folder the app lends a page-supplied module: MOUNT, then one FS_CALL at a time
   * (the module's Worker waits for each answer), TERMINATE when the worker has ended. */
  class Mount {
    constructor(spec, guest) {
      this.guest = guest;
      this.mode = null;
      this.pending = null; // [resolve, reject] of the MOUNT, then of the call in flight
      this.id = 0;
      this.ended = false;
      this.ready = new Promise((resolve, reject) => { this.pending = [resolve, reject]; });
      this.id = appChannel.add(this);
      appChannel.send(OP.MOUNT, this.id, jsonPayload(spec));
    }

    receive(op, buffer, start, length) {
      const [resolve, reject] = this.pending ?? [];
      this.pending = null;
      if (op === OP.ERROR) {
        const [{kind, message}] = readJson(buffer, start);
        appChannel.remove(this.id);
        this.ended = true;
        reject?.(new WasiError(message, kind));
      } else if (op === OP.MOUNTED) {
        this.mode = readJson(buffer, start)[0].mode;
        resolve?.(this);
      } else if (op === OP.FS_REPLY) {
        resolve?.(new Uint8Array(buffer, start, length));
      }
    }

    /** Relay one call of the Worker; resolves to the answer's bytes. */
    call(body) {
      if (this.ended) return Promise.reject(new WasiError('the host folder was taken back', 'bridge'));
      return new Promise((resolve, reject) => {
        this.pending = [resolve, reject];
        appChannel.send(OP.FS_CALL, this.id, body);
      });
    }

    end() {
      if (this.ended) return;
      this.ended = true;
      appChannel.remove(this.id);
      appChannel.send(OP.TERMINATE, this.id, EMPTY);
      this.pending?.[1](new WasiError('the host folder was taken back', 'bridge'));
      this.pending = null;
    }

    fail(error) {
      this.ended = true;
      this.pending?.[1](error);
      this.pending = null;
    }
  }

  /** Ask the app to lend each folder of `list`; the Mounts, in order. On the web, a picked
   * folder is lent as a copy instead (wasi-web.js readGrant; docs/web.md). */
  async function mountHosts(list, what) {
    if (!list.length) return [];
    if (config.web) return list.map(({spec, guest}) => webCopy(spec, guest, what));
    const mounts = list.map(({spec, guest}) => new Mount(spec, guest));
    try {
      return await Promise.all(mounts.map((m) => m.ready));
    } catch (e) {
      unmountHosts(mounts);
      throw e;
    }
  }

  /** A `grants` item of a page-supplied module on the web: the picked folder, to be copied. */
  function webCopy(spec, guest, what) {
    if (spec.preopen !== undefined) {
      throw new WasiError(`${what}: [page] preopens need the desktop app: a web page cannot lend folders of the machine (use vfs)`, 'unavailable');
    }
    const found = webGrant(spec.grant);
    if (found?.kind !== 'directory') {
      throw new WasiError('unknown directory grant: grants come from WasiWorker.requestDirectory() and are valid only in the page session that requested them', 'permission');
    }
    const mode = spec.mode ?? found.mode;
    if (mode === 'rw' && found.mode !== 'rw') {
      throw new WasiError(`the grant for folder '${found.handle.name}' is read-only: it cannot be lent read-write`, 'permission');
    }
    return {guest, mode, copy: found.handle, end() {}};
  }

  /** The worker that had them has ended: the app closes their handles. */
  function unmountHosts(mounts) {
    for (const m of mounts) m.end();
  }

  async function compileSource(source, what) {
    if (source instanceof WebAssembly.Module) return source;
    let bytes = source;
    if (!isBinary(source)) {
      const url = new URL(source, location.href);
      let response;
      try {
        response = await fetch(url);
      } catch (e) {
        throw new WasiError(`${what}: cannot fetch ${url}: ${e.message}`, 'start');
      }
      if (!response.ok) throw new WasiError(`${what}: ${url}: HTTP ${response.status}`, 'start');
      bytes = await response.arrayBuffer();
    }
    let module;
    try {
      module = await WebAssembly.compile(isBinary(source) ? copyBytes(source) : bytes);
    } catch (e) {
      throw new WasiError(`${what}: not a WebAssembly module: ${e.message}`, 'start');
    }
    compiles++;
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module !== 'wasi_snapshot_preview1') {
        throw new WasiError(`${what}: the module imports ${imp.module}.${imp.name}, but only WASI preview1 (wasi_snapshot_preview1) is provided`, 'start');
      }
    }
    return module;
  }

  /** A compiled page-supplied module: spawn or run it many times (WasiWorker.register). */
  class WasiService {
    #module;
    #name;
    #ipc;
    constructor(token, module, name, ipc) {
      if (token !== SERVICE_TOKEN) throw new TypeError('use WasiWorker.register() to make a WasiService');
      this.#module = module;
      this.#name = name;
      this.#ipc = ipc;
    }
    get name() { return this.#name; }
    get ipc() { return this.#ipc; }
    get module() { return this.#module; }
    /** A new instance in its own Worker: `new WasiWorker(this, options)`. */
    spawn(options) { return new WasiWorker(this, options); }
    /** Run an instance to the end: `WasiWorker.run(this, options)`. */
    run(options) { return WasiWorker.run(this, options); }
    /** How many page-supplied modules this page has compiled (register once: one). */
    static get compiles() { return compiles; }
  }

  function registerSource(source, options, what) {
    if (source instanceof WasiService) return Promise.resolve(source);
    const {name, ipc = 'lines'} = options ?? {};
    return compileSource(source, what).then((module) => new WasiService(SERVICE_TOKEN, module,
      moduleName(source, name), ipc));
  }

  /** The SPAWN/RUN payload of an instance of `service`, its module and vfs left in pageJobs. */
  function pagePayload(service, spec, vfs, stdin, hosts = []) {
    const key = `page:${nextJob++}`;
    pageJobs.set(key, {name: service.name, ipc: service.ipc, module: service.module, vfs, hosts});
    spec.service = key;
    return requestPayload(spec, [], stdin);
  }

  /** Decode a RESULT record into run()'s result, or its error. */
  function runReply(resolve, reject, outputs = null) {
    return (buffer, start, length) => {
      const [head, pos] = readJson(buffer, start);
      const end = start + length;
      const stdoutBytes = new Uint8Array(buffer.slice(pos, pos + head.stdoutLength));
      const stderrBytes = new Uint8Array(buffer.slice(pos + head.stdoutLength, end));
      const result = {
        exitCode: head.exitCode,
        stdout: decoder.decode(stdoutBytes),
        stderr: decoder.decode(stderrBytes),
        stdoutBytes,
      };
      if (outputs) {
        result.outputs = outputs.finish(head.error ? new WasiError(head.error.message, head.error.kind) : null);
      }
      if (head.error) reject(new WasiError(head.error.message, head.error.kind, result));
      else resolve(result);
    };
  }

  // -- the public API -----------------------------------------------------------------------------

  function handlerProperty(proto, type) {
    const slot = Symbol(`on${type}`);
    Object.defineProperty(proto, `on${type}`, {
      get() {
        return this[slot]?.handler ?? null;
      },
      set(handler) {
        if (this[slot]) this.removeEventListener(type, this[slot].listener);
        this[slot] = null;
        if (typeof handler === 'function') {
          const listener = (event) => handler.call(this, event);
          this.addEventListener(type, listener);
          this[slot] = {handler, listener};
        }
      },
      configurable: true,
      enumerable: true,
    });
  }

  class WasiWorker extends EventTarget {
    #link;

    /** Start an instance of service `name` (for a `background` service: connect to it). */
    constructor(name, options) {
      super();
      if (isPageSource(name)) {
        this.#link = this.#spawnPage(name, options);
        return;
      }
      const what = `new WasiWorker('${name}')`;
      const info = serviceInfo(name, what);
      const {spec, files, outputs} = requestSpec(name, options, SPAWN_OPTIONS, what);
      if (outputs?.some(([, stream]) => !stream)) {
        throw new TypeError(`${what}: a worker's outputs must be an object {guestPath: WritableStream} (an array of paths is for WasiWorker.run())`);
      }
      this.#link = new WorkerLink(this, name, info);
      if (outputs) this.#link.outputs = new OutputSinks(outputs, name);
      this.#link.start(requestPayload(spec, files));
    }

    /** A page-supplied module (a URL, a WasiService, a Module or bytes) in the browser engine. */
    #spawnPage(source, options) {
      const what = `new WasiWorker(${sourceLabel(source)})`;
      const own = source instanceof WasiService ? [] : MODULE_OPTIONS;
      checkOptions(options, [...PAGE_SPAWN_OPTIONS, ...own], what);
      const {spec} = requestSpec('', pick(options, ['args', 'env']), ['args', 'env'], what);
      const vfs = vfsList(options?.vfs, what);
      const hostDirs = hostList(options, vfs, what);
      const service = registerSource(source, options, what);
      const name = source instanceof WasiService ? source.name : moduleName(source, options?.name);
      const ipc = source instanceof WasiService ? source.ipc : options?.ipc ?? 'lines';
      const link = new WorkerLink(this, name, {kind: 'dedicated', ipc}, pageChannel);
      link.start(service.then(async (svc) => {
        const hosts = await mountHosts(hostDirs, what);
        if (link.state !== 'running') { // terminated while it compiled or mounted
          unmountHosts(hosts);
          releaseVfs(vfs, new WasiError(`worker '${name}' was terminated`, 'terminated'));
          return EMPTY;
        }
        if (hosts.length) this.addEventListener('exit', () => unmountHosts(hosts), {once: true});
        return pagePayload(svc, spec, vfs, undefined, hosts);
      }).catch((e) => {
        releaseVfs(vfs, e);
        throw e;
      }));
      for (const which of ['stdout', 'stderr']) {
        if (options?.[which]) link.stream(which).pipeTo(options[which]).catch(() => {});
      }
      return link;
    }

    get name() { return this.#link.name; }

    /** The service's `ipc` mode: "lines" (string messages), "frames" or "stream" (binary). */
    get ipc() { return this.#link.info.ipc; }

    /** Send one message: a string without newlines for `lines`, bytes for `frames`/`stream`. */
    postMessage(data) {
      const link = this.#link;
      const {ipc} = link.info;
      let bytes;
      if (ipc === 'lines') {
        if (typeof data !== 'string') {
          throw new TypeError(`service '${link.name}' uses ipc = "lines": postMessage() takes a string, got ${describe(data)}`);
        }
        if (data.includes('\n')) {
          throw new TypeError(`service '${link.name}' uses ipc = "lines": a message cannot contain a newline (post each line as its own message)`);
        }
        bytes = encodeText(data, `a message for service '${link.name}'`);
      } else {
        if (!isBinary(data)) {
          throw new TypeError(`service '${link.name}' uses ipc = "${ipc}": postMessage() takes an ArrayBuffer or a TypedArray, got ${describe(data)}`);
        }
        bytes = copyBytes(data);
      }
      link.post(OP.SEND, bytes);
    }

    /** Stop the instance now. No more message/error events; `exit` follows. */
    terminate() {
      this.#link.terminate();
    }

    /** Raw stdin (no framing): write Uint8Array/ArrayBuffer/string chunks, close() for EOF. */
    get stdin() {
      const link = this.#link;
      if (link.info.kind === 'background') {
        throw new TypeError(`service '${link.name}' is kind = "background": its stdin is shared, use postMessage()`);
      }
      link.stdinStream ??= new WritableStream({
        write: (chunk) => new Promise((resolve, reject) => {
          link.post(OP.STDIN, toBytes(chunk, 'a worker.stdin chunk'), {resolve, reject});
        }),
        close: () => link.post(OP.CLOSE_STDIN, EMPTY),
        abort: () => link.post(OP.CLOSE_STDIN, EMPTY),
      });
      return link.stdinStream;
    }

    /** stdout as bytes, from the moment this is first read. Read it: a full stream pauses the service. */
    get stdout() { return this.#link.stream('stdout'); }

    /** stderr as bytes (every line also goes to console.warn), from first access. */
    get stderr() { return this.#link.stream('stderr'); }

    /** Run a task to completion: resolves to {exitCode, stdout, stderr, stdoutBytes}. */
    static run(name, options) {
      if (isPageSource(name)) return WasiWorker.#runPage(name, options);
      return new Promise((resolve, reject) => {
        const what = `WasiWorker.run('${name}')`;
        const info = serviceInfo(name, what);
        if (info.kind === 'background') {
          throw new WasiError(`service '${name}' is kind = "background": connect to it with new WasiWorker('${name}')`, 'permission');
        }
        const {spec, files, outputs} = requestSpec(name, options, RUN_OPTIONS, what);
        const stdin = options?.stdin;
        if (stdin !== undefined) checkData(stdin, `${what}: stdin`);
        const sinks = outputs && new OutputSinks(outputs, name);
        const request = new Request(runReply(resolve, reject, sinks), reject, appChannel, sinks);
        requestPayload(spec, files, stdin).then((payload) => request.send(OP.RUN, payload), reject);
      });
    }

    static #runPage(source, options) {
      return new Promise((resolve, reject) => {
        const what = `WasiWorker.run(${sourceLabel(source)})`;
        const own = source instanceof WasiService ? [] : MODULE_OPTIONS;
        checkOptions(options, [...PAGE_RUN_OPTIONS, ...own], what);
        const {spec} = requestSpec('', pick(options, ['args', 'env']), ['args', 'env'], what);
        const vfs = vfsList(options?.vfs, what);
        const hostDirs = hostList(options, vfs, what);
        const stdin = options?.stdin;
        if (stdin !== undefined) checkData(stdin, `${what}: stdin`);
        let hosts = [];
        const done = () => unmountHosts(hosts);
        const request = new Request(runReply((r) => { done(); resolve(r); }, (e) => { done(); reject(e); }),
          (e) => { done(); reject(e); }, pageChannel);
        registerSource(source, options, what)
          .then(async (svc) => {
            hosts = await mountHosts(hostDirs, what);
            return pagePayload(svc, spec, vfs, stdin, hosts);
          })
          .then((payload) => request.send(OP.RUN, payload), reject);
      });
    }

    /** Compile a page-supplied module once (a URL, a WebAssembly.Module or bytes); the
     * WasiService spawns and runs it many times. `options`: {name, ipc}. */
    static register(source, options) {
      return new Promise((resolve) => {
        const what = `WasiWorker.register(${sourceLabel(source)})`;
        if (!isPageSource(source) || source instanceof WasiService) {
          throw new TypeError(`${what}: give a module URL (with '/', '.' or ':'), a URL, a WebAssembly.Module or bytes`);
        }
        checkOptions(options, MODULE_OPTIONS, what);
        resolve(registerSource(source, options, what));
      });
    }

    /** Open the native folder picker; resolves to a DirectoryGrant, rejects if cancelled. */
    static requestDirectory(options) {
      return new Promise((resolve, reject) => {
        const mode = options?.mode ?? 'ro';
        if (mode !== 'ro' && mode !== 'rw') {
          throw new TypeError(`WasiWorker.requestDirectory(): mode must be 'ro' or 'rw', got ${JSON.stringify(mode)}`);
        }
        if (config.web) {
          resolve(webDirectory(mode));
          return;
        }
        const request = new Request((buffer, start) => {
          const [grant] = readJson(buffer, start);
          resolve(new DirectoryGrant(grant.grant, grant.name, grant.mode));
        }, reject);
        request.send(OP.PICK, jsonPayload({mode}));
      });
    }

    /** This app's services: {name: {kind, ipc, userGrants, scratch}}. */
    static get services() {
      return structuredClone(config.services);
    }
  }

  for (const type of ['message', 'error', 'exit']) handlerProperty(WasiWorker.prototype, type);

  // -- `wvwasi.app`: events from the app window (docs/page-api.md, "The wvwasi global") --------
  // `open`: the files, URLs and arguments of a launch (the first one, and each later launch the
  // single instance was handed); `menu`: a [[window.menu]] item was clicked; `tray`: the tray
  // icon or an item of its menu was clicked. The window calls __wvwasiDispatch; `open` events
  // wait until the page adds its first `open` listener.
  class AppEvents extends EventTarget {
    #held = [];
    #listened = false;

    addEventListener(type, listener, options) {
      super.addEventListener(type, listener, options);
      if (type === 'open' && listener && !this.#listened) {
        this.#listened = true;
        const held = this.#held.splice(0);
        setTimeout(() => { for (const detail of held) this.#fire('open', detail); });
      }
    }

    #fire(type, detail) {
      this.dispatchEvent(new CustomEvent(type, {detail}));
    }

    deliver(type, detail) {
      if (type === 'open' && !this.#listened) {
        this.#held.push(detail);
      } else {
        this.#fire(type, detail);
      }
      return true;
    }
  }
  const appEvents = new AppEvents();
  // An `open` event's files become FileGrants first (in order: each waits for the one before).
  let opening = Promise.resolve();
  Object.defineProperty(globalThis, '__wvwasiDispatch', {
    value: (type, detail) => {
      if (type !== 'open' || !detail.files?.length) return appEvents.deliver(type, detail);
      opening = opening.then(async () => {
        const files = [];
        for (const {token, ...file} of detail.files) {
          const grants = await pickFiles({kind: 'launched', token}).catch(() => []);
          files.push({...file, grant: grants[0] ?? null});
        }
        appEvents.deliver(type, {...detail, files});
      });
      return true;
    },
  });

  // -- `wvwasi.dialog`: files the user picks, as FileGrants -------------------------------------
  /** A file the user picked (or opened the app with): read it, and replace it if read-write. */
  class FileGrant {
    constructor(id, name, mode) {
      Object.defineProperty(this, 'id', {value: id});
      this.name = name;
      this.mode = mode;
      Object.freeze(this);
    }

    /** The file's bytes. */
    read() {
      if (config.web) return webFiles.read(this);
      return fileRequest(OP.READ, this, []).then(({buffer, start, length}) =>
        new Uint8Array(buffer.slice(start, start + length)));
    }

    /** The file's text (UTF-8). */
    async text() {
      return decoder.decode(await this.read());
    }

    /** Replace the file's content (a string, Blob, ArrayBuffer or TypedArray), atomically. */
    async write(data) {
      checkData(data, 'FileGrant.write() data');
      const bytes = await toBytesAsync(data, 'FileGrant.write() data');
      if (config.web) return webFiles.write(this, bytes);
      await fileRequest(OP.WRITE, this, [bytes]);
    }
  }

  function fileRequest(op, grant, blobs) {
    return new Promise((resolve, reject) => {
      const request = new Request((buffer, start, length) => resolve({buffer, start, length}),
                                  reject);
      request.send(op, jsonPayload({grant: grant.id}, blobs));
    });
  }

  function pickFiles(spec) {
    return new Promise((resolve, reject) => {
      const request = new Request((buffer, start) => {
        const [{grants}] = readJson(buffer, start);
        resolve(grants.map((g) => new FileGrant(g.grant, g.name, g.mode)));
      }, reject);
      request.send(OP.PICK, jsonPayload(spec));
    });
  }

  function acceptList(accept, what) {
    if (accept === undefined) return [];
    if (!Array.isArray(accept) || !accept.every((a) => typeof a === 'string')) {
      throw new TypeError(`${what}: accept must be an array of extensions like ['.note']`);
    }
    return accept;
  }

  // On the web: the browser's own pickers. File System Access (Chromium) gives handles that a
  // grant reads and, read-write, replaces (createWritable writes a swap file that close() moves
  // over the file: never half-written); without it, openFile falls back to <input type=file>
  // (read-only: nothing leads back to the file). A grant's file stays in the page (webFiles).
  const webFiles = {
    entries: new Map(), // grant id -> {handle} | {file} (as the bridge keeps a page's grants)
    count: 0,
    MAX: MAX_FRAME - (1 << 20), // the desktop's bound on one read or write (bridge/grants.py)

    add(picked, mode) {
      return picked.slice(0, 256).map((entry) => {
        const name = entry.handle?.name ?? entry.file.name;
        const grant = new FileGrant(`web-${++this.count}`, name, mode);
        this.entries.set(grant.id, entry);
        return grant;
      });
    },
    entry(grant) {
      const entry = this.entries.get(grant.id);
      if (!entry) throw new WasiError('not a file grant of this page', 'permission');
      return entry;
    },
    async read(grant) {
      const entry = this.entry(grant);
      const file = entry.file ?? await failing(() => entry.handle.getFile(), grant, 'read');
      if (file.size > this.MAX) {
        throw new WasiError(`cannot read ${grant.name}: it is over ${this.MAX} bytes`, 'start');
      }
      return new Uint8Array(await failing(() => file.arrayBuffer(), grant, 'read'));
    },
    async write(grant, bytes) {
      const entry = this.entry(grant);
      if (grant.mode !== 'rw') {
        throw new WasiError(`the grant for file '${grant.name}' is read-only`, 'permission');
      }
      if (bytes.byteLength > this.MAX) {
        throw new WasiError(`cannot write ${grant.name}: over ${this.MAX} bytes`, 'invalid');
      }
      const writable = await failing(() => entry.handle.createWritable(), grant, 'write');
      await failing(async () => { await writable.write(bytes); await writable.close(); },
                    grant, 'write');
    },
    /** FilePickerOptions `types` for `accept` (['.note'] or ['note']). */
    types(accept) {
      const extensions = accept.map((a) => `.${a.replace(/^\./, '')}`);
      return extensions.length ? [{description: 'Files',
                                   accept: {'application/octet-stream': extensions}}] : [];
    },
    async open(mode, multiple, accept) {
      if (typeof showOpenFilePicker === 'function') {
        const handles = await picking(() => showOpenFilePicker({multiple,
                                                                types: this.types(accept)}));
        return this.add(handles.map((handle) => ({handle})), mode);
      }
      if (mode === 'rw') {
        throw new WasiError('wvwasi.dialog.openFile({mode: \'rw\'}) needs a browser with the File System Access API (showOpenFilePicker): this one can only read a picked file', 'unavailable');
      }
      const files = await new Promise((resolve, reject) => {
        const input = document.createElement('input');
        input.type = 'file';
        input.multiple = multiple;
        input.accept = accept.map((a) => `.${a.replace(/^\./, '')}`).join(',');
        input.addEventListener('change', () => resolve([...input.files]));
        input.addEventListener('cancel', () => reject(
          new WasiError('the user cancelled the file dialog', 'cancelled')));
        input.click();
      });
      return this.add(files.map((file) => ({file})), 'ro');
    },
    async save(suggestedName, accept) {
      if (typeof showSaveFilePicker !== 'function') {
        throw new WasiError('wvwasi.dialog.saveFile() needs a browser with the File System Access API (showSaveFilePicker); offer a download instead', 'unavailable');
      }
      const handle = await picking(() => showSaveFilePicker({
        ...(suggestedName ? {suggestedName} : {}), types: this.types(accept)}));
      return this.add([{handle}], 'rw');
    },
  };

  // A folder picked on the web: the browser's showDirectoryPicker (File System Access). The
  // handle stays in the page; a service given the grant works on a copy of the folder that
  // wasi-web.js reads at its start and, read-write, writes back at its exit (docs/web.md).
  const webDirs = new Map(); // grant id -> {handle, mode}

  async function webDirectory(mode) {
    if (typeof showDirectoryPicker !== 'function') {
      throw new WasiError('WasiWorker.requestDirectory() needs a browser with the File System Access API (showDirectoryPicker: Chromium, Edge); this one cannot open folders of the machine', 'unavailable');
    }
    const handle = await picking(() => showDirectoryPicker({
      mode: mode === 'rw' ? 'readwrite' : 'read'}), 'folder picker');
    const grant = new DirectoryGrant(`web-${++webFiles.count}`, handle.name, mode);
    webDirs.set(grant.id, {handle, mode});
    return grant;
  }

  /** What wasi-web.js learns of grant `id` of this page: a folder, a file or nothing. */
  function webGrant(id) {
    const dir = webDirs.get(id);
    if (dir) return {kind: 'directory', ...dir};
    const file = webFiles.entries.get(id);
    return file ? {kind: 'file', name: file.handle?.name ?? file.file.name} : null;
  }

  /** A browser picker's result; the user closing it (AbortError) rejects with `cancelled`. */
  async function picking(show, what = 'file dialog') {
    try {
      return await show();
    } catch (e) {
      if (e?.name === 'AbortError') {
        throw new WasiError(`the user cancelled the ${what}`, 'cancelled');
      }
      throw new WasiError(`the browser's ${what} failed: ${e?.message ?? e}`, 'unavailable');
    }
  }

  /** A browser file operation; its failure (the file vanished, no permission) as a WasiError. */
  async function failing(operation, grant, what) {
    try {
      return await operation();
    } catch (e) {
      const kind = e?.name === 'NotAllowedError' || e?.name === 'SecurityError' ? 'permission' : 'start';
      throw new WasiError(`cannot ${what} ${grant.name}: ${e?.message ?? e}`, kind);
    }
  }

  const dialog = {
    /** Ask the user for a file to open (an array of them with `multiple`). */
    async openFile(options = {}) {
      const mode = options.mode ?? 'ro';
      if (mode !== 'ro' && mode !== 'rw') {
        throw new TypeError(`wvwasi.dialog.openFile(): mode must be 'ro' or 'rw', got ${JSON.stringify(mode)}`);
      }
      const multiple = Boolean(options.multiple);
      const accept = acceptList(options.accept, 'openFile()');
      const grants = config.web ? await webFiles.open(mode, multiple, accept)
        : await pickFiles({kind: 'open', mode, multiple, accept});
      return multiple ? grants : grants[0];
    },
    /** Ask the user where to save; a read-write FileGrant (the file may not exist yet). */
    async saveFile(options = {}) {
      const suggestedName = options.suggestedName ?? '';
      if (typeof suggestedName !== 'string') {
        throw new TypeError('wvwasi.dialog.saveFile(): suggestedName must be a string');
      }
      const accept = acceptList(options.accept, 'saveFile()');
      const [grant] = config.web ? await webFiles.save(suggestedName, accept)
        : await pickFiles({kind: 'save', mode: 'rw', suggestedName, accept});
      return grant;
    },
  };
  // -- `wvwasi.window`: the app window's title, size, full screen, close ------------------------
  function appCall(call, args) {
    return new Promise((resolve, reject) => {
      const request = new Request((buffer, start, length) =>
        resolve(JSON.parse(decoder.decode(new Uint8Array(buffer, start, length)))), reject);
      request.send(OP.APP, jsonPayload({call, args}));
    });
  }

  // On the web: a second window is a browser window (window.open) on a page of the site, checked
  // as the desktop checks it (runtime/app.py `_open_window`, runtime/bridge/static.py `page`).
  const webWindows = {
    MAX: 8, MAX_TITLE: 1024, MAX_SIZE: 16384, MAX_PAGE: 1024,
    opened: new Set(),

    async open(page, options) {
      if (typeof page !== 'string' || typeof options !== 'object' || options === null) {
        throw new TypeError('wvwasi.window.open(page, {title, width, height}): page must be a string and options an object');
      }
      const {title, width, height} = {...config.web.window, ...options}; // [window]'s defaults
      const unknown = Object.keys(options).filter((k) => !['title', 'width', 'height'].includes(k));
      const size = (n) => Number.isInteger(n) && n >= 1 && n <= this.MAX_SIZE;
      if (unknown.length || typeof title !== 'string' || title.length > this.MAX_TITLE ||
          !size(width) || !size(height)) {
        throw new WasiError(`wvwasi.window.open(): options are {title: a string of at most ${this.MAX_TITLE} characters, width and height: 1 to ${this.MAX_SIZE}}` +
          (unknown.length ? ` (unknown: [${unknown.sort().map((k) => `'${k}'`).join(', ')}])` : ''), 'invalid');
      }
      for (const w of this.opened) if (w.closed) this.opened.delete(w);
      if (this.opened.size >= this.MAX) {
        throw new WasiError(`${this.MAX} second windows are open: close one first`, 'limit');
      }
      const url = await this.page(page);
      const opened = window.open(url, '_blank', `popup,width=${width},height=${height}`);
      if (!opened) {
        throw new WasiError('wvwasi.window.open(): the browser blocked the new window (open it from a click handler)', 'unavailable');
      }
      this.opened.add(opened);
      if (options.title !== undefined) this.retitle(opened, url, title);
    },

    /** `title` for the page `opened` is loading, once it has replaced the first about:blank
     * (whose own `load` may come first); looked for every 50 ms, for 30 s at most. */
    retitle(opened, url, title) {
      const until = Date.now() + 30000;
      const look = () => {
        let loaded = false;
        try {
          loaded = opened.location.href === url && opened.document.readyState !== 'loading';
        } catch {
          return; // it went to another origin: not ours to title
        }
        if (loaded) opened.document.title = title;
        else if (!opened.closed && Date.now() < until) setTimeout(look, 50);
      };
      look();
    },

    /** The URL of `page` if it names an HTML page of the site's UI, else kind `permission`. */
    async page(page) {
      const refuse = (why) => new WasiError(`wvwasi.window.open(): '${page}' ${why}`, 'permission');
      const parts = page.split('/');
      if (!page || page.length > this.MAX_PAGE || /[?#:\\\0]/.test(page) || page.startsWith('/')) {
        throw refuse("is not a page of the app (a path like 'settings.html' inside its UI folder)");
      }
      if (parts.some((p) => p.startsWith('.')) || parts[0] === '__wvwasi') {
        throw refuse("is not a page of the app's UI folder");
      }
      const url = new URL(page, new URL('..', config.web.base)).href;
      let response;
      try {
        response = await fetch(url);
        response.body?.cancel();
      } catch {
        throw refuse("is not a page of the app's UI folder");
      }
      if (!response.ok || new URL(response.url).origin !== location.origin) {
        throw refuse("is not a page of the app's UI folder");
      }
      if (!(response.headers.get('Content-Type') ?? '').startsWith('text/html')) {
        throw refuse('is not an HTML page');
      }
      return url;
    },
  };

  // On the web the page's own document stands in where the browser has an API for it.
  const unavailable = (what) => Promise.reject(new WasiError(
    `wvwasi.window.${what}() needs the desktop app: a web page cannot ${what} its browser window`,
    'unavailable'));
  const appWindow = config.web ? {
    setTitle: async (title) => { document.title = String(title); },
    resize: () => unavailable('resize'),
    setFullscreen: async (on) => {
      if (on) await document.documentElement.requestFullscreen();
      else if (document.fullscreenElement) await document.exitFullscreen();
    },
    async close() { // browsers let a script close only a window a script opened
      window.close();
      if (!window.closed) {
        throw new WasiError('wvwasi.window.close(): the browser lets a page close only a window that wvwasi.window.open() (or another script) opened', 'unavailable');
      }
    },
    open: (page, options = {}) => webWindows.open(page, options),
    setMenu: () => unavailable('setMenu'),
  } : {
    setTitle: (title) => appCall('setTitle', [String(title)]),
    resize: (width, height) => appCall('resize', [width, height]),
    setFullscreen: (on) => appCall('setFullscreen', [Boolean(on)]),
    close: () => appCall('close', []),
    /** Open a second window on `page`, a page of the app's UI ('settings.html'). */
    async open(page, options = {}) {
      if (typeof page !== 'string' || typeof options !== 'object' || options === null) {
        throw new TypeError('wvwasi.window.open(page, {title, width, height}): page must be a string and options an object');
      }
      await appCall('open', [page, {...options}]);
    },
    setMenu: (menu) => appCall('setMenu', [menu]),
  };

  // -- `wvwasi.notify`: a desktop notification ([app] notifications) ---------------------------
  function notifyOptions({title, body = ''} = {}) {
    if (typeof title !== 'string' || typeof body !== 'string') {
      throw new TypeError('wvwasi.notify(): expected {title: string, body?: string}');
    }
    return [title, body];
  }
  /** On the web: the browser's Notification API, after asking the user for permission. */
  async function webNotify(options) {
    const [title, body] = notifyOptions(options);
    if (typeof Notification === 'undefined') {
      throw new WasiError('wvwasi.notify(): this browser has no Notification API', 'unavailable');
    }
    if (await Notification.requestPermission() !== 'granted') {
      throw new WasiError('wvwasi.notify(): the user did not allow notifications', 'permission');
    }
    new Notification(title, {body});
  }
  const notify = config.web ? webNotify
    : async (options) => { await appCall('notify', notifyOptions(options)); };
  const wvwasi = {app: appEvents, dialog, window: Object.freeze(appWindow), notify};

  Object.assign(globalThis, {WasiWorker, WasiError, WasiExitEvent, DirectoryGrant, WasiService,
                             FileGrant, wvwasi});

  // --- wvwasi.updater, wvwasi.app.relaunch (docs/update.md) -----------------------------------
  // Members of the `wvwasi` global above.
  {
    const action = async (name) => {
      if (config.web) {
        throw new WasiError(`${name}: a web page is updated by its server, not by the app`, 'unavailable');
      }
      const url = `/__wvwasi/actions/${name}?key=${encodeURIComponent(socketKey ?? '')}`;
      const response = await fetch(url, {method: 'POST'});
      if (!response.ok) throw new WasiError(`${name}: HTTP ${response.status}`, 'update');
      return response;
    };
    const answer = (reply) => {
      if (reply.error) throw new WasiError(reply.error, 'update');
      return reply;
    };
    wvwasi.updater = Object.freeze({
      /** A newer signed release: {version, notes, date}, or null when this one is the newest. */
      async check() {
        return answer(await (await action('update-check')).json()).update;
      },
      /** Download, verify and install it; onProgress({downloaded, total}) as bytes arrive.
       * Resolves to the installed version (null: already the newest); wvwasi.app.relaunch()
       * then starts it. */
      async install(onProgress) {
        const reader = (await action('update-install')).body
          .pipeThrough(new TextDecoderStream()).getReader();
        let buffered = '';
        for (;;) {
          const {value, done} = await reader.read();
          if (done) throw new WasiError('update-install: the answer broke off', 'update');
          buffered += value;
          let end;
          while ((end = buffered.indexOf('\n')) >= 0) {
            const reply = JSON.parse(buffered.slice(0, end));
            buffered = buffered.slice(end + 1);
            if (reply.progress) {
              onProgress?.({downloaded: reply.progress[0], total: reply.progress[1]});
            } else {
              reader.cancel();
              return answer(reply).installed ?? null;
            }
          }
        }
      },
    });
    /** Start the app again (its installed version) and close this one. */
    wvwasi.app.relaunch = async () => {
      answer(await (await action('relaunch')).json());
    };
  }
  if (config.dev) appChannel.connect(); // so that `wvwasi dev` can reload the page
})();
