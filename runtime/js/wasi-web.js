/*
 * wvwasi on the web: the bridge, played inside the page.
 *
 * In a site made by `wvwasi build --format web`, wvwasi.js has no app to connect to. Instead of
 * a WebSocket it hands its records (docs/architecture.md, "Bridge protocol") to `serve()` here,
 * which answers them as the native bridge and host would, running each service instance in a
 * dedicated Web Worker with the browser engine (wasi-engine.js). So the page API and its
 * behaviour (ipc framing, kinds, files, scratch, stdio streams, flow control, errors) are the
 * same code in the desktop app and on the web.
 *
 * Preopens on the web (the build maps every manifest preopen to one of these; docs/web.md):
 *   site     a read-only tree shipped with the site, fetched once (relative host paths, $RESOURCES)
 *   appdata  $APPDATA/...: one tree per tab, loaded from and saved to the origin private file
 *            system (OPFS) where the browser has it, else kept in memory for the tab's life
 *   memory   $CACHE, $TEMP: a fresh empty folder per instance
 *   grant    a folder the user picked (showDirectoryPicker): copied in at the start, and for
 *            `rw` written back at exit (readGrant, writeGrant)
 * `background` services: one shared instance per tab, started at its first connection.
 */
import {WasiInstance, canBlock, compileService, fetchTree} from './wasi-engine.js';
import {HEADER, MessageDecoder, MessageTooLong, concat, encodeMessage, jsonPayload, readJson,
  readRecords, writeRecords} from './wasi-wire.js';

const encoder = new TextEncoder();
const RESTART_BACKOFF = [100, 250, 500, 1000, 2000, 5000]; // ms, as the native host
const HEALTHY_MS = 10000;
const MAX_PENDING = 10000;
const STDERR_LINE = 64 << 10; // bytes of one stderr line at most (runtime/host/instance.py)
const CAPTURED_STDERR = 1 << 20; // stderr bytes a task keeps (runtime/host/instance.py)

export class Refused extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Splits stderr into lines as the native host does: a longer line (or an unterminated one past
 * the limit) in pieces of STDERR_LINE bytes. */
class StderrLines {
  constructor() {
    this.pending = new Uint8Array(0);
  }
  feed(chunk) {
    const data = this.pending.length ? concat([this.pending, chunk]) : chunk;
    const out = [];
    let pos = 0;
    for (let nl; (nl = data.indexOf(10, pos)) >= 0; pos = nl + 1) {
      let at = pos;
      do {
        out.push(data.slice(at, Math.min(nl, at + STDERR_LINE)));
        at += STDERR_LINE;
      } while (at < nl);
    }
    for (; data.length - pos > STDERR_LINE; pos += STDERR_LINE) {
      out.push(data.slice(pos, pos + STDERR_LINE));
    }
    this.pending = data.slice(pos);
    return out;
  }
  finish() {
    const rest = this.pending;
    this.pending = new Uint8Array(0);
    return rest.length ? [rest] : [];
  }
}

/** A task's stderr: the first CAPTURED_STDERR bytes, then a note of how many more were cut. */
class CapturedStderr {
  constructor() {
    this.chunks = [];
    this.kept = 0;
    this.cut = 0;
  }
  push(chunk) {
    const keep = Math.max(0, Math.min(chunk.length, CAPTURED_STDERR - this.kept));
    if (keep) this.chunks.push(chunk.subarray(0, keep));
    this.kept += keep;
    this.cut += chunk.length - keep;
  }
  bytes() {
    const note = this.cut ? [encoder.encode(`\n[wvwasi: ${this.cut} more bytes of stderr cut]\n`)]
      : [];
    return concat([...this.chunks, ...note]);
  }
}

/** Whether an instance that ended with `error` was stopped by the host (terminated, over a
 * limit): then, as natively, its last unterminated line is not delivered. */
function stopped(error) {
  return ['terminated', 'timeout', 'output'].includes(error?.kind);
}

/** The messages `chunk` completes, or none when it breaks limits.message: `inst` then ends with
 * an "output" error, as natively (runtime/host/instance.py). */
function messagesOf(inst, decoder, chunk) {
  try {
    return decoder.feed(chunk);
  } catch (e) {
    if (!(e instanceof MessageTooLong)) throw e;
    inst.fail({kind: 'output', message: `service '${inst.name}' ${e.message}`});
    return [];
  }
}

// -- folders ---------------------------------------------------------------------------------------

/** $APPDATA trees of this tab: loaded from OPFS once, saved after every change. */
class AppData {
  constructor(appId) {
    this.appId = appId;
    this.trees = new Map(); // key -> Promise<entries>
    this.saving = Promise.resolve();
  }
  async #root(create) {
    if (!navigator.storage?.getDirectory) return null;
    try {
      let dir = await navigator.storage.getDirectory();
      for (const part of ['wvwasi', this.appId]) {
        dir = await dir.getDirectoryHandle(part, {create});
      }
      return dir;
    } catch {
      return null; // no OPFS here (or not yet created): the tree lives in memory
    }
  }
  get(key) {
    if (!this.trees.has(key)) this.trees.set(key, this.#load(key));
    return this.trees.get(key);
  }
  /** The OPFS folder of `$APPDATA/key` (`.` is $APPDATA itself, `a/b` two levels down). */
  async #dir(key, create) {
    let dir = await this.#root(create);
    for (const part of key.split('/').filter((p) => p && p !== '.')) {
      if (!dir) break;
      dir = await dir.getDirectoryHandle(part, {create});
    }
    return dir;
  }
  async #load(key) {
    try {
      const dir = await this.#dir(key, false);
      return dir ? await readOpfs(dir, '') : [];
    } catch {
      return [];
    }
  }
  put(key, entries) {
    this.trees.set(key, Promise.resolve(entries));
    this.saving = this.saving.then(async () => {
      const dir = await this.#dir(key, true);
      if (!dir) return;
      const old = [];
      for await (const name of dir.keys()) old.push(name);
      for (const name of old) await dir.removeEntry(name, {recursive: true});
      await writeOpfs(dir, entries);
    }).catch((e) => console.warn(`[wvwasi] could not save $APPDATA/${key}: ${e}`));
  }
}

async function readOpfs(dir, prefix) {
  const out = [];
  for await (const [name, handle] of dir.entries()) {
    const path = prefix + name;
    if (handle.kind === 'directory') {
      out.push({path, type: 'dir'}, ...await readOpfs(handle, `${path}/`));
    } else {
      out.push({path, type: 'file', data: await (await handle.getFile()).arrayBuffer()});
    }
  }
  return out;
}

async function writeOpfs(root, entries) {
  for (const e of entries) {
    const parts = e.path.split('/');
    let dir = root;
    for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part, {create: true});
    const name = parts[parts.length - 1];
    if (e.type === 'dir') {
      await dir.getDirectoryHandle(name, {create: true});
    } else if (e.type === 'file') {
      const writable = await (await dir.getFileHandle(name, {create: true})).createWritable();
      await writable.write(e.data);
      await writable.close();
    } // symlinks are not kept: OPFS has none
  }
}

// -- folders the user picked (showDirectoryPicker) ----------------------------------------------------
// WASI calls are synchronous and a browser's folder handles are not: an instance works on a copy
// of the folder, read when it starts and, for `rw`, written back when it exits (docs/web.md).
// Both copies are bounded by the service's limits.files (entries) and limits.files_size (bytes).

/** The entries of picked folder `handle` (files with their bytes and mtime), or a Refused
 * (kind `start`) when it holds more than the service's bounds; nothing is read then. */
export async function readGrant(handle, service, guest) {
  const {files: maxEntries, files_size: maxBytes} = service.limits;
  const over = (what) => new Refused('start', `service '${service.name}': the folder ` +
    `'${handle.name}' granted at ${guest} ${what} (on the web a service works on a copy of a ` +
    `picked folder, within ${service.job ? 'fixed bounds' : 'its limits.files and ' +
    'limits.files_size'}; docs/web.md)`);
  const found = [];
  const walk = async (dir, prefix) => {
    for await (const [name, child] of dir.entries()) {
      if (found.length >= maxEntries) throw over(`has more than ${maxEntries} entries`);
      const path = prefix + name;
      // every file's metadata is asked for at once, not one after another (each is a round trip)
      found.push(child.kind === 'directory' ? {path, type: 'dir'}
        : {path, type: 'file', file: child.getFile()});
      if (child.kind === 'directory') await walk(child, `${path}/`);
    }
  };
  try {
    await walk(handle, '');
    const files = await Promise.all(found.map((e) => e.file));
    const bytes = files.reduce((n, f) => n + (f?.size ?? 0), 0);
    if (bytes > maxBytes) throw over(`holds more than ${maxBytes} bytes`);
    // one read of all of them: a Blob of the files (faster than one read per file; docs/web.md)
    const all = new Uint8Array(await new Blob(files.filter(Boolean)).arrayBuffer());
    let at = 0;
    return found.map(({path, type}, i) => {
      if (type === 'dir') return {path, type};
      at += files[i].size;
      return {path, type, data: all.subarray(at - files[i].size, at), mtim: files[i].lastModified};
    });
  } catch (e) {
    if (e instanceof Refused) throw e;
    throw new Refused(e?.name === 'NotAllowedError' ? 'permission' : 'start', `service ` +
      `'${service.name}': cannot read the folder '${handle.name}' granted at ${guest}: ` +
      `${e?.message ?? e}`);
  }
}

function sameBytes(a, b) {
  const x = ArrayBuffer.isView(a) ? a : new Uint8Array(a);
  const y = ArrayBuffer.isView(b) ? b : new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Make picked folder `handle` hold `after` (the instance's tree at exit) where it held `before`
 * (the copy it started with): new and changed files written (each through the browser's swap
 * file: never half-written), removed entries removed (a rename is both). Checked first, so
 * nothing is written when `after` is over the bounds or holds a symlink (a folder of the
 * browser has none); an Error with `kind` otherwise. */
export async function writeGrant(handle, before, after, service, guest) {
  const name = service.name;
  const {files: maxEntries, files_size: maxBytes} = service.limits;
  const limit = (key) => (service.job ? '' : ` (services.${name}.limits.${key})`);
  const refuse = (what, why = '') => Object.assign(new Error(`service '${name}' ${what} in the ` +
    `folder '${handle.name}' granted at ${guest}${why}: nothing of it was written back ` +
    '(docs/web.md)'), {kind: 'output'});
  if (after.length > maxEntries) {
    throw refuse(`left more than ${maxEntries} entries${limit('files')}`);
  }
  const size = after.reduce((n, e) => n + (e.type === 'file' ? e.data.byteLength : 0), 0);
  if (size > maxBytes) {
    throw refuse(`left more than ${maxBytes} bytes${limit('files_size')}`);
  }
  const link = after.find((e) => e.type === 'symlink');
  if (link) throw refuse(`made a symlink (${link.path})`, ", and a browser's folder holds none");
  const odd = after.find((e) => e.path.includes('\\'));
  if (odd) {
    throw refuse(`made a name with a backslash (${odd.path})`, ", which a browser's folder " +
      'cannot hold');
  }
  const old = new Map(before.map((e) => [e.path, e]));
  const now = new Map(after.map((e) => [e.path, e]));
  const dirs = new Map([['', handle]]);
  const dirOf = async (path) => {
    if (!dirs.has(path)) {
      const cut = path.lastIndexOf('/');
      const parent = await dirOf(cut < 0 ? '' : path.slice(0, cut));
      dirs.set(path, await parent.getDirectoryHandle(path.slice(cut + 1), {create: true}));
    }
    return dirs.get(path);
  };
  const remove = async (path) => {
    const cut = path.lastIndexOf('/');
    await (await dirOf(cut < 0 ? '' : path.slice(0, cut))).removeEntry(path.slice(cut + 1),
      {recursive: true});
  };
  // Entries gone (or of another type now), outermost only (removing a folder removes its tree).
  const gone = before.filter((e) => now.get(e.path)?.type !== e.type);
  const goneDirs = new Set(gone.filter((e) => e.type === 'dir').map((e) => e.path));
  const top = gone.filter((e) => !e.path.split('/').slice(0, -1)
    .some((_, i, parts) => goneDirs.has(parts.slice(0, i + 1).join('/'))));
  try {
    for (const e of top.filter((x) => now.has(x.path))) await remove(e.path); // type changed
    for (const e of after) { // parents come before what they hold (dumpTree's order)
      const was = old.get(e.path);
      if (e.type === 'dir') {
        await dirOf(e.path);
      } else if (!was || was.type !== 'file' || !sameBytes(was.data, e.data)) {
        const cut = e.path.lastIndexOf('/');
        const dir = await dirOf(cut < 0 ? '' : e.path.slice(0, cut));
        const writable = await (await dir.getFileHandle(e.path.slice(cut + 1), {create: true}))
          .createWritable();
        await writable.write(e.data);
        await writable.close();
      }
    }
    for (const e of top.filter((x) => !now.has(x.path))) await remove(e.path);
  } catch (e) {
    throw Object.assign(new Error(`service '${name}': writing back the folder ` +
      `'${handle.name}' granted at ${guest} failed: ${e?.message ?? e}`),
    {kind: e?.name === 'NotAllowedError' ? 'permission' : 'output'});
  }
}

// -- the bridge --------------------------------------------------------------------------------------

/**
 * Answer wvwasi.js's records. `socket` is the WebSocket-like object wvwasi.js made: this sets its
 * `send` and `readyState` and calls its `onopen`/`onmessage`.
 */
export function serve(socket, config, grantOf = () => null) {
  const bridge = new LocalBridge(socket, config, grantOf);
  socket.send = (frame) => bridge.receive(frame);
  socket.readyState = 1; // WebSocket.OPEN
  queueMicrotask(() => socket.onopen?.());
}

export class LocalBridge {
  constructor(socket, config, grantOf = () => null) {
    this.socket = socket;
    this.grantOf = grantOf; // the page's grants (wvwasi.js webGrant): folders picked on the web
    this.op = config.ops;
    this.services = config.services;
    this.web = config.web;
    this.base = new URL(config.web?.base ?? location.href);
    this.links = new Map(); // id -> Link
    this.out = [];
    this.flushing = false;
    this.modules = new Map(); // `${url} ${memory limit}` -> Promise<WebAssembly.Module>
    this.downloads = new Map(); // url -> Promise<ArrayBuffer>
    this.trees = new Map();
    this.appdata = new AppData(config.web?.app ?? '');
    this.background = new Map();
    this.live = new Map(); // service -> live instance count
    this.window = config.window;
  }

  // records to the page, packed into one frame per task
  post(op, id, payload = new Uint8Array(0)) {
    this.out.push([op, id, payload]);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }
  #flush() {
    this.flushing = false;
    const records = this.out;
    this.out = [];
    const size = records.reduce((n, r) => n + HEADER + r[2].length, 0);
    this.socket.onmessage?.({data: writeRecords(new Uint8Array(size), records).buffer});
  }

  receive(frame) {
    const bytes = new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
    readRecords(bytes, (op, id, start, length) => {
      this.#record(op, id, new Uint8Array(bytes.buffer.slice(start, start + length)));
    });
  }

  #record(op, id, payload) {
    const O = this.op;
    if (op === O.SPAWN || op === O.RUN) {
      const link = new Link(this, id, op === O.RUN);
      this.links.set(id, link);
      link.start(payload);
    } else if (op === O.PICK) {
      this.post(O.ERROR, id, jsonPayload({kind: 'unavailable', message: 'folder pickers need the ' +
        'desktop app: a web page cannot open folders of the machine (docs/web.md)'}));
    } else {
      this.links.get(id)?.record(op, payload);
    }
  }

  // -- what instances need ---------------------------------------------------------------------

  /** A `grants` item of a spawn ({grant: id, guest, mode?}): the folder the page picked, checked
   * as the native bridge checks it (runtime/bridge/grants.py). */
  grant(item) {
    const found = this.grantOf(item?.grant);
    if (found?.kind === 'file') {
      throw new Refused('permission', `'${found.name}' is a file grant: pass its content ` +
        '(grant.read()) in `files` instead of mounting it');
    }
    if (!found) {
      throw new Refused('permission', 'unknown directory grant: grants come from ' +
        'WasiWorker.requestDirectory() and are valid only in the page session that requested them');
    }
    const mode = item.mode ?? found.mode;
    if (mode === 'rw' && found.mode !== 'rw') {
      throw new Refused('permission', `the grant for folder '${found.handle.name}' is read-only: ` +
        "request it with WasiWorker.requestDirectory({mode: 'rw'}) to let a service write to it");
    }
    return {guest: item.guest, raw: item.guest, mode, handle: found.handle};
  }

  service(name) {
    const web = this.web.services[name];
    if (!web) {
      const known = Object.keys(this.web.services).join(', ') || 'none';
      throw new Refused('lookup', `no service named '${name}' in this app (services: ${known})`);
    }
    return {...this.services[name], ...web, name};
  }

  /** The compiled module of `service`: fetched once per file (services of one module share
   * it, content-addressed by the build) and compiled once per memory limit. */
  module(service) {
    const url = new URL(service.module, this.base).href;
    if (!this.downloads.has(url)) {
      this.downloads.set(url, fetch(url).then((response) => {
        if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
        return response.arrayBuffer();
      }));
    }
    const key = `${url} ${service.limits.memory ?? ''}`;
    if (!this.modules.has(key)) {
      this.modules.set(key, this.downloads.get(url)
        .then((bytes) => compileService(bytes, service.limits.memory)));
    }
    return this.modules.get(key);
  }

  async preopens(service, spec) {
    const out = [];
    const grants = [];
    for (const g of spec.grants ?? []) { // a background instance has none
      const entries = await readGrant(g.handle, service, g.guest);
      grants.push({guest: g.guest, mode: g.mode, entries, grant: g});
    }
    for (const p of service.preopens) {
      let entries = [];
      if (p.source === 'site') {
        const url = new URL(p.tree, this.base).href;
        if (!this.trees.has(url)) this.trees.set(url, fetchTree(url));
        entries = await this.trees.get(url);
      } else if (p.source === 'appdata') {
        entries = await this.appdata.get(p.key);
      }
      out.push({guest: p.guest, mode: p.mode, entries, persist: p.source === 'appdata' &&
        p.mode === 'rw', key: p.key});
    }
    out.push(...grants);
    // as natively: every file in one read-only tree preopened at `/`, then the scratch folder
    if (spec.files.length) {
      out.push({guest: '/', mode: 'ro', entries: spec.files.map(({path, data}) => (
        {path: path.slice(1), type: 'file', data}))});
    }
    if (spec.scratch) out.push({guest: '/scratch', mode: 'rw', entries: []});
    const folders = outputFolders(spec.outputs);
    for (const top of folders.top) {
      const entries = folders.all.filter((f) => f !== top && within(f, top))
        .map((f) => ({path: f.slice(top.length + 1), type: 'dir'}));
      out.push({guest: top, mode: 'rw', entries});
    }
    return out;
  }

  /** Check a SPAWN/RUN request like the native host (options only narrow the manifest). */
  check(service, spec) {
    const name = service.name;
    if (spec.scratch && !service.scratch) {
      throw new Refused('permission', `service '${name}' has no scratch folder: set ` +
        `services.${name}.scratch = true`);
    }
    if (spec.grants.length && !service.userGrants) {
      throw new Refused('permission', `service '${name}' does not accept user-picked folders: ` +
        `set services.${name}.user_grants = true`);
    }
    (spec.args ?? []).forEach((arg, i) => {
      if (arg.includes('\0')) {
        throw new Refused('invalid', `service '${name}': args[${i}] must be a string without NUL`);
      }
    });
    for (const [key, value] of spec.env ?? []) {
      if (!key || key.includes('=') || key.includes('\0')) {
        throw new Refused('invalid', `service '${name}': env name '${key}' is invalid (empty, ` +
          "or has '=' or NUL)");
      }
      if (value.includes('\0')) {
        throw new Refused('invalid', `service '${name}': env ${key} must be a string without NUL`);
      }
    }
    for (const grant of spec.grants) {
      const guest = normalGuest(grant.guest);
      if (!guest || guest === '/') {
        throw new Refused('invalid', `service '${name}': grant path refused: ` +
          `${JSON.stringify(grant.guest)}`);
      }
      grant.guest = guest;
    }
    if (spec.grants.length > MAX_GRANTS) {
      throw new Refused('permission', `service '${name}': ${spec.grants.length} grants given, ` +
        `at most ${MAX_GRANTS}`);
    }
    // guest path -> what it is, in the native host's words (runtime/host/spawn_options.py)
    const what = new Map(service.preopens.map((p) => [p.guest,
      `the preopen ${p.guest} from services.${name}.preopens`]));
    if (spec.scratch) what.set('/scratch', 'the scratch folder /scratch');
    for (const grant of spec.grants) {
      const shadowed = [...what].find(([t]) => within(grant.guest, t) || within(t, grant.guest));
      if (shadowed) {
        throw new Refused('permission', `service '${name}': grant ${grant.raw} would shadow ` +
          `${shadowed[1]}`);
      }
      what.set(grant.guest, `the grant ${grant.raw}`);
    }
    const taken = [...what.keys()];
    for (const {path} of spec.files) {
      const parts = path.split('/');
      if (!path.startsWith('/') || parts.includes('..') || parts.length < 2 || path === '/') {
        throw new Refused('invalid', `service '${name}': files path '${path}' must be ` +
          'absolute, not /');
      }
      const dir = path.slice(0, path.lastIndexOf('/')) || '/';
      for (const t of taken) {
        if (dir === t || dir.startsWith(t === '/' ? '/' : `${t}/`)) {
          throw new Refused('permission', `service '${name}': file ${path} would shadow ` +
            what.get(t));
        }
      }
    }
    const limits = service.limits;
    if (spec.outputs.length > limits.files) {
      throw new Refused('permission', `service '${name}': ${spec.outputs.length} outputs given, ` +
        `more than services.${name}.limits.files = ${limits.files}`);
    }
    for (const path of spec.files.map((f) => f.path)) taken.push(path);
    spec.outputs.forEach((path, i) => {
      const parts = path.split('/');
      if (!path.startsWith('/') || parts.slice(1).some((x) => !x || x === '.' || x === '..')) {
        throw new Refused('invalid', `service '${name}': outputs path refused: '${path}'`);
      }
      const dir = path.slice(0, path.lastIndexOf('/'));
      if (!dir) {
        throw new Refused('invalid', `service '${name}': output ${path} must be inside a ` +
          'folder (/out/result, not /result)');
      }
      for (const t of taken) {
        if (within(dir, t) || within(t, dir)) {
          throw new Refused('permission', `service '${name}': output ${path} would shadow ${t}`);
        }
      }
      if (spec.outputs.some((o, j) => j !== i && o !== path && (within(o, path) || within(path, o)))) {
        throw new Refused('invalid', `service '${name}': output ${path} overlaps another output`);
      }
    });
    if (outputFolders(spec.outputs).top.length > MAX_OUTPUT_FOLDERS) {
      throw new Refused('permission', `service '${name}': outputs in more than ` +
        `${MAX_OUTPUT_FOLDERS} separate folders`);
    }
    const fixed = new Set(service.env.map(([k]) => k));
    for (const [key] of spec.env ?? []) {
      if (fixed.has(key)) {
        throw new Refused('permission', `service '${name}': env ${key} is set by ` +
          `services.${name}.env and cannot be overridden`);
      }
    }
  }

  /** A new instance of `service` (a WasiInstance), or a Refused. */
  async launch(service, spec, stdin) {
    if (stdin === 'stream' && !canBlock()) {
      throw new Refused('isolation', `service '${service.name}' needs a cross-origin isolated ` +
        'page (Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: ' +
        'require-corp): serve the site with its _headers file or the service worker in ' +
        '__wvwasi/coi-sw.js (docs/web.md)');
    }
    let module;
    try {
      module = await this.module(service);
    } catch (e) {
      throw new Refused('start', `service '${service.name}' failed to start: ${e.message ?? e}`);
    }
    const preopens = await this.preopens(service, spec);
    const inst = new WasiInstance({
      name: service.name, module, stdin, limits: service.limits,
      window: stdin === 'stream' ? this.window : 0,
      args: [service.name, ...service.args, ...(spec.args ?? [])],
      env: [...service.env, ...(spec.env ?? [])],
      preopens,
      dump: [...outputFolders(spec.outputs).top,
        ...preopens.filter((p) => p.grant?.mode === 'rw').map((p) => p.guest)],
    });
    inst.grants = preopens.filter((p) => p.grant?.mode === 'rw');
    inst.onsync = (guest, entries) => {
      const p = preopens.find((x) => x.guest === guest);
      if (p?.persist) this.appdata.put(p.key, entries);
    };
    return inst;
  }

  acquire(service) {
    const limit = service.limits.instances;
    const live = this.live.get(service.name) ?? 0;
    if (limit && live >= limit) {
      throw new Refused('limit', `service '${service.name}' already has ${live} live ` +
        `instance(s): services.${service.name}.limits.instances = ${limit}`);
    }
    this.live.set(service.name, live + 1);
    return () => this.live.set(service.name, this.live.get(service.name) - 1);
  }

  backgroundOf(service) {
    if (!this.background.has(service.name)) {
      this.background.set(service.name, new Background(this, service));
    }
    return this.background.get(service.name);
  }
}

/** One shared instance of a `background` service for this tab, restarted when it ends. */
class Background {
  constructor(bridge, service) {
    this.bridge = bridge;
    this.service = service;
    this.subs = new Set();
    this.inst = null;
    this.pending = [];
    this.failures = 0;
    this.decoder = null;
    this.held = 0; // output bytes not yet acknowledged to the instance
    this.#start();
  }
  async #start() {
    const started = performance.now();
    let inst;
    try {
      inst = await this.bridge.launch(this.service, {files: []}, 'stream');
    } catch (e) {
      this.#ended(started, {code: null, error: {kind: e.kind ?? 'start', message: e.message}});
      return;
    }
    this.inst = inst;
    this.decoder = new MessageDecoder(this.service.ipc, this.service.limits.message);
    const stderr = new StderrLines();
    inst.onstdout = (b) => {
      this.held += b.length;
      for (const m of messagesOf(inst, this.decoder, b)) this.#each((l) => l.message(m));
      this.release();
    };
    inst.onstderr = (b) => {
      this.held += b.length;
      for (const m of stderr.feed(b)) this.#each((l) => l.stderr(m));
      this.release();
    };
    inst.onexit = (result) => {
      if (!stopped(result.error)) {
        for (const m of this.decoder.finish()) this.#each((l) => l.message(m));
        for (const m of stderr.finish()) this.#each((l) => l.stderr(m));
      }
      this.inst = null;
      this.#ended(started, result);
    };
    for (const bytes of this.pending.splice(0)) inst.writeStdin(bytes);
  }
  #ended(started, result) {
    this.#each((l) => l.exit(result.code, result.error));
    this.subs.clear();
    if (performance.now() - started > HEALTHY_MS) this.failures = 0;
    const delay = RESTART_BACKOFF[Math.min(this.failures++, RESTART_BACKOFF.length - 1)];
    setTimeout(() => this.#start(), delay);
  }
  #each(fn) { for (const link of [...this.subs]) fn(link); }
  subscribe(link) { this.subs.add(link); }
  unsubscribe(link) {
    this.subs.delete(link);
    this.release();
  }
  /** Let the instance go on once no subscriber is a window behind (as natively: one slow page
   * pauses the shared instance). */
  release() {
    if (this.inst && [...this.subs].every((l) => l.unacked < this.bridge.window)) {
      this.inst.ack(this.held);
      this.held = 0;
    }
  }
  send(bytes) {
    if (this.inst) return this.inst.writeStdin(bytes);
    if (this.pending.length >= MAX_PENDING) return Promise.resolve(); // dropped, as natively
    this.pending.push(bytes);
    return Promise.resolve();
  }
}

/** One page worker or run: its instance (or background subscription) and its input credit. */
class Link {
  constructor(bridge, id, isRun) {
    this.bridge = bridge;
    this.id = id;
    this.isRun = isRun;
    this.chain = Promise.resolve(); // page records, handled in order
    this.inst = null;
    this.bg = null;
    this.ended = false;
    this.muted = false;
    this.unacked = 0; // MESSAGE/STDERR bytes (headers included) the page has not credited
    this.held = 0; // output bytes of our instance not yet acknowledged to it
  }

  start(payload) {
    this.chain = this.#start(payload).catch((e) => {
      this.#forget();
      const kind = e instanceof Refused ? e.kind : 'start';
      this.bridge.post(this.bridge.op.ERROR, this.id, jsonPayload({kind, message: e.message}));
    });
  }

  async #start(payload) {
    const [spec, rest] = readJson(payload);
    let at = 0;
    spec.files = (spec.files ?? []).map(([path, size]) => {
      const data = rest.slice(at, at + size);
      at += size;
      return {path, data};
    });
    spec.outputs = [...new Set(spec.outputs ?? [])];
    spec.grants = (spec.grants ?? []).map((item) => this.bridge.grant(item));
    const service = this.bridge.service(spec.service);
    this.service = service;
    if (service.kind === 'background') {
      const given = spec.args?.length || spec.env?.length || spec.files.length || spec.scratch ||
        spec.grants?.length || spec.outputs.length;
      if (this.isRun || given) {
        throw new Refused('permission', this.isRun
          ? `service '${service.name}' is kind = "background": connect to it with ` +
            'new WasiWorker(), WasiWorker.run() is for tasks'
          : `service '${service.name}' is kind = "background": its one instance is shared by ` +
            'the whole app, so a page cannot give it args, env, files, scratch, grants or outputs');
      }
      this.bg = this.bridge.backgroundOf(service);
      this.bg.subscribe(this);
      return;
    }
    this.bridge.check(service, spec);
    const release = this.bridge.acquire(service);
    const stdin = this.isRun ? rest.slice(at, at + spec.stdin) : 'stream';
    let inst;
    try {
      inst = await this.bridge.launch(service, spec, stdin);
    } catch (e) {
      release();
      throw e;
    }
    this.inst = inst;
    /** Files the instance handed back (`outputs`) go to the page before its end; over their
     * bounds, it ends with an "output" error, as natively. Then its read-write grants' folders
     * get what it left in them (whatever way it ended, unless stopped: then nothing). */
    const handBack = async (code, error, trees = {}) => {
      if (code !== null && !error && spec.outputs.length) {
        try {
          this.#outputs(collectOutputs(service, spec.outputs, trees));
        } catch (e) {
          ({code, error} = {code: null, error: {kind: 'output', message: e.message}});
        }
      }
      for (const p of inst.grants ?? []) {
        if (!trees[p.guest]) continue;
        try {
          await writeGrant(p.grant.handle, p.entries, trees[p.guest], service, p.guest);
        } catch (e) {
          if (!error) {
            ({code, error} = {code: null, error: {kind: e.kind ?? 'output', message: e.message}});
          }
        }
      }
      return {code, error};
    };
    if (this.isRun) {
      const out = [];
      let size = 0;
      const max = service.limits.message ?? Infinity;
      const err = new CapturedStderr();
      inst.onstdout = (b) => {
        if (size + b.length > max) {
          inst.fail({kind: 'output', message: `service '${service.name}' wrote more than ` +
            `${max} bytes to stdout (its limits.message)`});
          return;
        }
        size += b.length;
        out.push(b);
      };
      inst.onstderr = (b) => err.push(b);
      inst.onexit = async (result) => {
        release();
        const {code, error} = await handBack(result.code, result.error, result.trees);
        const stdout = concat(out);
        this.#forget();
        this.bridge.post(this.bridge.op.RESULT, this.id, jsonPayload(
          {exitCode: code, stdoutLength: stdout.length, error}, [stdout, err.bytes()]));
      };
      return;
    }
    const messages = new MessageDecoder(service.ipc, service.limits.message);
    const lines = new StderrLines();
    inst.onstdout = (b) => {
      this.held += b.length;
      for (const m of messagesOf(inst, messages, b)) this.message(m);
      this.release();
    };
    inst.onstderr = (b) => {
      this.held += b.length;
      for (const m of lines.feed(b)) this.stderr(m);
      this.release();
    };
    inst.onexit = async (result) => {
      release();
      if (!stopped(result.error)) {
        for (const m of messages.finish()) this.message(m);
        for (const m of lines.finish()) this.stderr(m);
      }
      const {code, error} = await handBack(result.code, result.error, result.trees);
      this.exit(code, error);
    };
  }

  /** OUTPUT records of the files handed back, in pieces, before EXIT/RESULT (as link.py). */
  #outputs(files) {
    for (const [path, data] of files) {
      for (let at = 0; at < Math.max(data.length, 1); at += OUTPUT_PIECE) {
        this.bridge.post(this.bridge.op.OUTPUT, this.id,
          jsonPayload({path}, [data.subarray(at, at + OUTPUT_PIECE)]));
      }
    }
  }

  record(op, payload) {
    const O = this.bridge.op;
    if (op === O.CREDIT) { // not queued behind input: output flow must not wait for it
      this.unacked = Math.max(0, this.unacked - new DataView(payload.buffer).getUint32(0, true));
      this.release();
      return;
    }
    this.chain = this.chain.then(async () => {
      if (this.ended) return;
      const cost = payload.length + HEADER;
      if (op === O.SEND) {
        const bytes = encodeMessage(this.service.ipc, payload);
        await (this.bg ? this.bg.send(bytes) : this.inst.writeStdin(bytes));
        this.bridge.post(O.CREDIT, this.id, u32(cost));
      } else if (op === O.STDIN && this.inst) {
        await this.inst.writeStdin(payload);
        this.bridge.post(O.CREDIT, this.id, u32(cost));
      } else if (op === O.CLOSE_STDIN) {
        this.inst?.closeStdin();
      } else if (op === O.TERMINATE) {
        this.muted = true;
        if (this.bg) {
          this.bg.unsubscribe(this);
          this.exit(null, {kind: 'terminated', message: 'terminated by the page'});
        } else {
          this.inst?.terminate('terminated by the page');
        }
      }
    });
  }

  /** Acknowledge held output to the instance while the page is less than a window behind. */
  release() {
    if (this.bg) {
      this.bg.release();
    } else if (this.inst && this.unacked < this.bridge.window) {
      this.inst.ack(this.held);
      this.held = 0;
    }
  }

  message(bytes) { this.#out(this.bridge.op.MESSAGE, bytes); }

  stderr(bytes) { this.#out(this.bridge.op.STDERR, bytes); }

  #out(op, bytes) {
    if (this.ended || this.muted) return;
    this.unacked += bytes.length + HEADER;
    this.bridge.post(op, this.id, bytes);
  }

  exit(code, error) {
    if (this.ended) return;
    this.#forget();
    this.bridge.post(this.bridge.op.EXIT, this.id, jsonPayload({code, error}));
  }

  #forget() {
    this.ended = true;
    this.bg?.unsubscribe(this);
    this.bridge.links.delete(this.id);
  }
}

// -- per-spawn outputs (runtime/host/outputs.py) ---------------------------------------------------

const OUTPUT_PIECE = 1 << 20;
const MAX_OUTPUT_FOLDERS = 16; // runtime/host/outputs.py MAX_FOLDERS

const MAX_GRANTS = 16; // runtime/host/spawn_options.py

/** Absolute guest path `path` without empty, `.` and `..` parts, or null (guestpath.py). */
function normalGuest(path) {
  if (typeof path !== 'string' || !path.startsWith('/') || /[\0\\]/.test(path)) return null;
  const parts = [];
  for (const part of path.split('/')) {
    if (part === '..') {
      if (!parts.length) return null;
      parts.pop();
    } else if (part && part !== '.') {
      parts.push(part);
    }
  }
  return `/${parts.join('/')}`;
}

function within(path, folder) {
  return path === folder || folder === '/' || path.startsWith(`${folder}/`);
}

/** The folders of `outputs`: all of them, and those not inside another (the preopens). */
function outputFolders(outputs = []) {
  const all = [...new Set(outputs.map((p) => p.slice(0, p.lastIndexOf('/'))))].sort();
  return {all, top: all.filter((f) => !all.some((o) => o !== f && within(f, o)))};
}

/** [path, bytes] of each output left as a regular file in the dumped `trees`, in order; an
 * Error over `limits.files` entries or `limits.files_size` bytes in the output folders. */
function collectOutputs(service, outputs, trees) {
  const name = service.name;
  const {files, files_size: maxBytes} = service.limits;
  const byPath = new Map();
  let entries = 0;
  let size = 0;
  const tops = outputFolders(outputs).top;
  for (const [top, tree] of Object.entries(trees ?? {}).filter(([t]) => tops.includes(t))) {
    for (const entry of tree) {
      if (++entries > files) {
        throw new Error(`service '${name}' made more than ${files} entries in its output ` +
          `folders (services.${name}.limits.files)`);
      }
      if (entry.type !== 'file') continue;
      size += entry.data.length;
      if (size > maxBytes) {
        throw new Error(`service '${name}' wrote more than ${maxBytes} bytes to its output ` +
          `folders (services.${name}.limits.files_size)`);
      }
      byPath.set(`${top}/${entry.path}`, entry.data);
    }
  }
  return outputs.filter((p) => byPath.has(p)).map((p) => [p, byPath.get(p)]);
}

function u32(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
}
