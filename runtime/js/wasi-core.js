/*
 * wvwasi browser engine, part 1 of 3: WASI preview1 over an in-memory file system.
 *
 * No DOM, no Worker API: `Wasi` takes the guest's args/env/preopens and an stdio object, and gives
 * the `wasi_snapshot_preview1` imports. wasi-worker.js runs it in a dedicated Web Worker, where
 * blocking calls (stdin reads, poll_oneoff sleeps) may block the thread (Atomics.wait).
 * Semantics follow wasmtime's preview1 host (the native service host): paths never leave their
 * preopen (`..` past it, an absolute path or symlink target: EPERM, as natively), read-only
 * preopens refuse writes (EPERM), symlinks are followed up to 32 levels (ELOOP). A preopen may
 * instead be a folder of the machine (`host`: a wasi-hostfs.js HostFolder, desktop app only):
 * every call on its descriptors goes to the host.
 */
import {HOST_CALLS, HostFail, HostNode, hostCalls} from './wasi-hostfs.js';

export const ERRNO = Object.freeze({
  SUCCESS: 0, TOOBIG: 1, ACCES: 2, AGAIN: 6, BADF: 8, BUSY: 10, EXIST: 20, FAULT: 21, FBIG: 22,
  ILSEQ: 25, INVAL: 28, IO: 29, ISDIR: 31, LOOP: 32, MFILE: 33, NAMETOOLONG: 37, NOENT: 44,
  NOMEM: 48, NOSPC: 51, NOSYS: 52, NOTDIR: 54, NOTEMPTY: 55, NOTSOCK: 57, NOTSUP: 58, NOTTY: 59,
  OVERFLOW: 61, PERM: 63, PIPE: 64, ROFS: 69, SPIPE: 70, XDEV: 75, NOTCAPABLE: 76,
});
const E = ERRNO;

const FILETYPE = {UNKNOWN: 0, CHAR: 2, DIR: 3, FILE: 4, SYMLINK: 7};
const FDFLAGS = {APPEND: 1, DSYNC: 2, NONBLOCK: 4, RSYNC: 8, SYNC: 16};
const OFLAGS = {CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8};
const FST = {ATIM: 1, ATIM_NOW: 2, MTIM: 4, MTIM_NOW: 8};
const R = {
  FD_DATASYNC: 1n, FD_READ: 2n, FD_SEEK: 4n, FD_FDSTAT_SET_FLAGS: 8n, FD_SYNC: 16n, FD_TELL: 32n,
  FD_WRITE: 64n, FD_ADVISE: 128n, FD_ALLOCATE: 256n, PATH_CREATE_DIRECTORY: 512n,
  PATH_CREATE_FILE: 1024n, PATH_LINK_SOURCE: 2048n, PATH_LINK_TARGET: 4096n, PATH_OPEN: 8192n,
  FD_READDIR: 16384n, PATH_READLINK: 32768n, PATH_RENAME_SOURCE: 65536n,
  PATH_RENAME_TARGET: 131072n, PATH_FILESTAT_GET: 262144n, PATH_FILESTAT_SET_SIZE: 524288n,
  PATH_FILESTAT_SET_TIMES: 1048576n, FD_FILESTAT_GET: 2097152n, FD_FILESTAT_SET_SIZE: 4194304n,
  FD_FILESTAT_SET_TIMES: 8388608n, PATH_SYMLINK: 16777216n, PATH_REMOVE_DIRECTORY: 33554432n,
  PATH_UNLINK_FILE: 67108864n, POLL_FD_READWRITE: 134217728n,
};
const FILE_RIGHTS = R.FD_DATASYNC | R.FD_READ | R.FD_SEEK | R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC |
  R.FD_TELL | R.FD_WRITE | R.FD_ADVISE | R.FD_ALLOCATE | R.FD_FILESTAT_GET |
  R.FD_FILESTAT_SET_SIZE | R.FD_FILESTAT_SET_TIMES | R.POLL_FD_READWRITE;
const DIR_RIGHTS = R.FD_FDSTAT_SET_FLAGS | R.FD_SYNC | R.FD_ADVISE | R.PATH_CREATE_DIRECTORY |
  R.PATH_CREATE_FILE | R.PATH_LINK_SOURCE | R.PATH_LINK_TARGET | R.PATH_OPEN | R.FD_READDIR |
  R.PATH_READLINK | R.PATH_RENAME_SOURCE | R.PATH_RENAME_TARGET | R.PATH_FILESTAT_GET |
  R.PATH_FILESTAT_SET_SIZE | R.PATH_FILESTAT_SET_TIMES | R.FD_FILESTAT_GET |
  R.FD_FILESTAT_SET_TIMES | R.PATH_SYMLINK | R.PATH_REMOVE_DIRECTORY | R.PATH_UNLINK_FILE;
// stdio as wasmtime reports it for pipes (the desktop's stdio): filetype unknown, not a
// terminal, rights only to read (stdin) or write; any other call on them is EBADF (seek and tell
// ESPIPE), whatever the rights say. Compared with native in tests/test_engines_agree.py.
const STDIO_CALLS = R.FD_READ | R.FD_WRITE | R.FD_SEEK | R.FD_TELL | R.FD_FILESTAT_GET;
// The rights wasmtime reports in fd_fdstat_get (it enforces none: rights neither narrow on
// path_open nor by fd_fdstat_set_rights, which is ENOTSUP). Files: all but read (and readdir)
// when not readable, all but write when not writable.
const ALL_RIGHTS = (1n << 30n) - 1n;
const REPORTED = {preopen: [129498624n, 267911167n], dir: [1069023163n, 1069023163n]};
const MAX_SYMLINKS = 32;
const MAX_FDS = 1024;
const MAX_FILE = 2 ** 31; // bytes in one in-memory file

/** A trap raised by a call, with wasmtime's text (an argument outside its enum, an exit
 * status of 126 or more). */
class WasiTrap extends Error {}

/** wasmtime's trap for `value` outside enum `type` of `call`'s arguments, or nothing. */
function checkEnum(call, type, value, max) {
  if (value > max) {
    throw new WasiTrap(`In func wasi_snapshot_preview1::${call} at convert ${type}: ` +
      `Invalid enum value ${type}`);
  }
}

/** Thrown by `proc_exit` (and caught by the runner): the guest asked to end with `code`. */
export class WasiExit extends Error {
  constructor(code) {
    super(`exit(${code})`);
    this.code = code;
  }
}

class Fail extends Error {
  constructor(errno) {
    super(`errno ${errno}`);
    this.errno = errno;
  }
}
const fail = (errno) => { throw new Fail(errno); };

// -- file system -----------------------------------------------------------------------------------

let nextIno = 1n;
const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));

class Node {
  constructor() {
    this.ino = nextIno++;
    this.nlink = 1n;
    this.atim = this.mtim = this.ctim = nowNs();
  }
}

/** A regular file: bytes in a growable buffer (`size` of them are the content). A file the page
 * streams (a `vfs` stream of a page-supplied module) has a `source` (a blocking reader like
 * stdin's: reads come from it in order, whatever the offset) or a `sink` (gets a copy of every
 * write) instead, and stays empty. */
export class File extends Node {
  constructor(data = new Uint8Array(0)) {
    super();
    this.data = data;
    this.size = data.length;
    this.source = null;
    this.sink = null;
  }
  get filetype() { return FILETYPE.FILE; }
  content() { return this.data.subarray(0, this.size); }
  resize(size) {
    if (size > MAX_FILE) fail(E.FBIG);
    if (size > this.data.length) {
      const grown = new Uint8Array(Math.max(size, Math.min(this.data.length * 2, MAX_FILE)));
      grown.set(this.data.subarray(0, this.size));
      this.data = grown;
    } else if (size < this.size) {
      this.data.fill(0, size, this.size);
    }
    this.size = size;
  }
  write(bytes, at) {
    const end = at + bytes.length;
    if (end > this.size) this.resize(end);
    this.data.set(bytes, at);
    this.mtim = this.ctim = nowNs();
  }
}

/** A directory: name -> node, in insertion order (readdir order). */
export class Dir extends Node {
  constructor(entries) {
    super();
    this.entries = new Map(entries ?? []);
    this.nlink = 2n;
  }
  get filetype() { return FILETYPE.DIR; }
}

export class Symlink extends Node {
  constructor(target) {
    super();
    this.target = target;
  }
  get filetype() { return FILETYPE.SYMLINK; }
}

/** A tree from `[{path, type: 'file'|'dir'|'symlink', data?, target?, mtim?}]` (paths relative,
 * '/'; `mtim`: a file's modification time in ms). */
export function buildTree(entries) {
  const root = new Dir();
  for (const entry of entries) {
    const parts = entry.path.split('/').filter((p) => p && p !== '.');
    if (!parts.length) continue;
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      let next = dir.entries.get(part);
      if (!next) dir.entries.set(part, next = new Dir());
      dir = next;
    }
    const name = parts[parts.length - 1];
    if (entry.type === 'dir') {
      if (!dir.entries.has(name)) dir.entries.set(name, new Dir());
    } else if (entry.type === 'symlink') {
      dir.entries.set(name, new Symlink(entry.target));
    } else {
      const file = new File(new Uint8Array(entry.data ?? 0));
      if (entry.mtim !== undefined) file.mtim = BigInt(Math.round(entry.mtim)) * 1000000n; // ms
      dir.entries.set(name, file);
    }
  }
  return root;
}

/** The opposite of buildTree: every entry under `dir` (files with their bytes). */
export function dumpTree(dir, prefix = '') {
  const out = [];
  for (const [name, node] of dir.entries) {
    const path = prefix + name;
    if (node instanceof Dir) {
      out.push({path, type: 'dir'});
      out.push(...dumpTree(node, path + '/'));
    } else if (node instanceof Symlink) {
      out.push({path, type: 'symlink', target: node.target});
    } else {
      out.push({path, type: 'file', data: node.content().slice()});
    }
  }
  return out;
}

// -- descriptors ------------------------------------------------------------------------------------

/** One open descriptor. `stream` is 'stdin' | 'stdout' | 'stderr' for stdio, else null. */
class Descriptor {
  constructor({node = null, stream = null, preopen = null, writable = false, readable = true,
    rights = 0n, inheriting = 0n, flags = 0, root = -1}) {
    this.node = node;
    this.root = root; // index of the preopen this descriptor was opened under (-1: stdio)
    this.stream = stream;
    this.preopen = preopen; // guest path of a preopened directory
    this.writable = writable; // writes allowed (open mode and the preopen's mode)
    this.readable = readable;
    this.rights = rights;
    this.inheriting = inheriting;
    this.flags = flags;
    this.pos = 0;
  }
  get filetype() { return this.stream ? FILETYPE.UNKNOWN : this.node.filetype; }
}

/** [base, inheriting] rights of `d` as wasmtime reports them (see ALL_RIGHTS). */
function reportedRights(d) {
  if (d.stream) return [d.rights, d.inheriting];
  if (d.filetype === FILETYPE.DIR) return d.preopen === null ? REPORTED.dir : REPORTED.preopen;
  let rights = ALL_RIGHTS;
  if (!d.readable) rights &= ~(R.FD_READ | R.FD_READDIR);
  if (!d.writable) rights &= ~R.FD_WRITE;
  return [rights, rights];
}

// -- the preview1 imports -----------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', {fatal: true});

/**
 * One guest's WASI state.
 * @param {object} o
 * @param {string[]} o.args  argv (argv[0] = the program name)
 * @param {[string, string][]} o.env
 * @param {{guest: string, dir: Dir, mode: 'ro'|'rw'}[]} o.preopens  fds 3, 4, … in this order
 * @param {{read(max: number): Uint8Array, ready(timeoutMs: number): boolean, ended(): boolean}}
 *   o.stdin  blocking; an empty read is EOF; `ready` waits up to `timeoutMs` (Infinity: no limit)
 *   for data or EOF; `ended` says whether it is drained and closed
 * @param {(bytes: Uint8Array) => void} o.stdout  gets a copy it may keep
 * @param {(bytes: Uint8Array) => void} o.stderr
 * @param {(ms: number) => void} o.sleep  blocks the thread
 * @param {(guest: string, entries: object[]) => void} [o.sync]  gets the whole tree of a preopen
 *   marked `persist` after it changed, before the guest next writes output, waits or exits
 */
export class Wasi {
  constructor({args = [], env = [], preopens = [], stdin, stdout, stderr, sleep, sync}) {
    this.args = args.map((a) => encoder.encode(a + '\0'));
    this.env = env.map(([k, v]) => encoder.encode(`${k}=${v}\0`));
    this.io = {stdin, stdout, stderr, sleep, sync};
    this.preopens = preopens;
    this.dirty = new Set(); // indices of persisted preopens changed since the last sync
    this.fds = new Map();
    this.fds.set(0, new Descriptor({stream: 'stdin', rights: R.FD_READ, inheriting: R.FD_READ}));
    this.fds.set(1, new Descriptor({stream: 'stdout', writable: true, readable: false,
      rights: R.FD_WRITE, inheriting: R.FD_WRITE}));
    this.fds.set(2, new Descriptor({stream: 'stderr', writable: true, readable: false,
      rights: R.FD_WRITE, inheriting: R.FD_WRITE}));
    preopens.forEach((p, i) => {
      this.fds.set(3 + i, new Descriptor({node: p.host ? new HostNode(p.host, 0, FILETYPE.DIR) : p.dir,
        preopen: p.guest, writable: p.mode === 'rw', rights: DIR_RIGHTS,
        inheriting: DIR_RIGHTS | FILE_RIGHTS, root: i}));
    });
    this.memory = null;
    this.imports = {wasi_snapshot_preview1: this.#bind()};
  }

  /** Run the command's `_start`; returns its exit code (0 when `_start` returns). Traps throw. */
  start(instance) {
    this.memory = instance.exports.memory;
    try {
      instance.exports._start();
      return 0;
    } catch (e) {
      if (e instanceof WasiExit) return e.code;
      throw e;
    } finally {
      this.sync();
    }
  }

  /** Hand every changed persisted preopen's tree to `sync` (see the constructor). */
  sync() {
    for (const i of this.dirty) this.io.sync(this.preopens[i].guest, dumpTree(this.preopens[i].dir));
    this.dirty.clear();
  }

  #touch(d) {
    if (d.root >= 0 && this.preopens[d.root].persist) this.dirty.add(d.root);
  }

  // memory helpers: a fresh view every call (memory.grow detaches the old buffer)
  get #view() { return new DataView(this.memory.buffer); }
  get #bytes() { return new Uint8Array(this.memory.buffer); }
  #slice(ptr, len) {
    if (ptr + len > this.memory.buffer.byteLength) fail(E.FAULT);
    return new Uint8Array(this.memory.buffer, ptr, len);
  }
  #string(ptr, len) {
    try {
      return decoder.decode(this.#slice(ptr, len));
    } catch (e) {
      if (e instanceof Fail) throw e;
      return fail(E.ILSEQ);
    }
  }
  #iovs(ptr, count) {
    const view = this.#view;
    const out = [];
    for (let i = 0; i < count; i++) {
      out.push(this.#slice(view.getUint32(ptr + 8 * i, true), view.getUint32(ptr + 8 * i + 4, true)));
    }
    return out;
  }

  #fd(fd, rights = 0n) {
    const d = this.fds.get(fd);
    if (!d) fail(E.BADF);
    if (d.stream) {
      if ((STDIO_CALLS & rights) !== rights) fail(E.BADF);
    } else if ((d.rights & rights) !== rights) {
      fail(d.node instanceof Dir ? E.BADF : E.NOTCAPABLE); // wasmtime: a file call on a folder
    }
    return d;
  }
  #dirFd(fd, rights = 0n) {
    const d = this.#fd(fd);
    if (d.stream) fail(E.BADF);
    if (!(d.node instanceof Dir)) fail(E.NOTDIR);
    if ((d.rights & rights) !== rights) fail(E.NOTCAPABLE);
    return d;
  }
  #fileFd(fd, rights = 0n) {
    const d = this.#fd(fd, rights);
    if (d.node instanceof Dir) fail(E.ISDIR);
    return d;
  }
  #newFd(desc) {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    if (fd >= MAX_FDS) fail(E.MFILE);
    this.fds.set(fd, desc);
    return fd;
  }

  /**
   * Walk `path` from directory descriptor `d`. Returns {parent, name, node, dirPath, slash}:
   * the last component's parent Dir and name, the node there (undefined if absent) and whether
   * the path ended in '/'. `follow`: resolve a symlink in the last component too.
   */
  #resolve(d, path, follow) {
    if (path.includes('\0')) fail(E.ILSEQ);
    if (path === '') fail(E.NOENT);
    if (path.startsWith('/')) fail(E.PERM);
    let stack = [d.node];
    let parts = path.split('/');
    let slash = false;
    let links = 0;
    for (;;) {
      // drop empty components; remember a trailing slash
      const last = parts.length - 1;
      let name = parts.shift();
      const isLast = parts.every((p) => p === '' || p === '.');
      if (isLast && parts.length && parts.some((p) => p === '' || p === '.')) slash = true;
      if (name === '' || name === '.') {
        if (isLast) return {parent: stack[stack.length - 1], name: '.', node: stack[stack.length - 1],
          slash: slash || last > 0, stack};
        continue;
      }
      if (name === '..') {
        if (stack.length === 1) fail(E.PERM);
        stack.pop();
        if (isLast) return {parent: stack[stack.length - 1], name: '.', node: stack[stack.length - 1],
          slash, stack};
        continue;
      }
      if (name.length > 85 && encoder.encode(name).length > 255) fail(E.NAMETOOLONG);
      const dir = stack[stack.length - 1];
      const node = dir.entries.get(name);
      if (isLast) {
        if (node instanceof Symlink && (follow || slash)) {
          if (++links > MAX_SYMLINKS) fail(E.LOOP);
          if (node.target.startsWith('/')) fail(E.PERM);
          parts = [...node.target.split('/'), ...(slash ? [''] : [])];
          continue;
        }
        return {parent: dir, name, node, slash, stack};
      }
      if (node === undefined) fail(E.NOENT);
      if (node instanceof Symlink) {
        if (++links > MAX_SYMLINKS) fail(E.LOOP);
        if (node.target.startsWith('/')) fail(E.PERM);
        parts = [...node.target.split('/'), ...parts];
        continue;
      }
      if (!(node instanceof Dir)) fail(E.NOTDIR);
      stack = [...stack, node];
    }
  }

  #needWritable(d) { if (!d.writable) fail(E.PERM); }

  #filestat(ptr, node, filetype) {
    const v = this.#view;
    v.setBigUint64(ptr, 0n, true); // dev
    v.setBigUint64(ptr + 8, node ? node.ino : 0n, true);
    v.setUint8(ptr + 16, filetype);
    for (let i = 17; i < 24; i++) v.setUint8(ptr + i, 0);
    v.setBigUint64(ptr + 24, node ? node.nlink : 0n, true);
    v.setBigUint64(ptr + 32, node instanceof File ? BigInt(node.size) :
      node instanceof Symlink ? BigInt(encoder.encode(node.target).length) : node ? 4096n : 0n, true);
    v.setBigUint64(ptr + 40, node ? node.atim : 0n, true);
    v.setBigUint64(ptr + 48, node ? node.mtim : 0n, true);
    v.setBigUint64(ptr + 56, node ? node.ctim : 0n, true);
  }

  #setTimes(node, atim, mtim, flags) {
    if ((flags & FST.ATIM && flags & FST.ATIM_NOW) || (flags & FST.MTIM && flags & FST.MTIM_NOW) ||
      flags & ~15) fail(E.INVAL);
    const now = nowNs();
    if (flags & FST.ATIM) node.atim = atim;
    if (flags & FST.ATIM_NOW) node.atim = now;
    if (flags & FST.MTIM) node.mtim = mtim;
    if (flags & FST.MTIM_NOW) node.mtim = now;
    node.ctim = now;
  }

  #write(d, iovs, at) {
    let written = 0;
    if (d.stream) {
      if (this.dirty.size) this.sync();
      const out = d.stream === 'stderr' ? this.io.stderr : this.io.stdout;
      for (const iov of iovs) {
        if (iov.length) out(iov.slice());
        written += iov.length;
      }
      return written;
    }
    const file = d.node;
    this.#touch(d);
    if (file.sink) {
      for (const iov of iovs) {
        if (iov.length) file.sink(iov.slice());
        written += iov.length;
      }
      return written;
    }
    // like the native host on Linux: an O_APPEND descriptor writes at the end, pwrite too
    let pos = d.flags & FDFLAGS.APPEND ? file.size : at ?? d.pos;
    for (const iov of iovs) {
      file.write(iov, pos);
      pos += iov.length;
      written += iov.length;
    }
    if (at === undefined) d.pos = pos;
    return written;
  }

  #read(d, iovs, at) {
    let total = 0;
    if (d.stream) {
      if (d.stream !== 'stdin') fail(E.BADF);
      if (this.dirty.size) this.sync();
      for (const iov of iovs) {
        if (!iov.length) continue;
        const chunk = this.io.stdin.read(iov.length);
        iov.set(chunk);
        total += chunk.length;
        break; // a pipe read returns what is there
      }
      return total;
    }
    const file = d.node;
    if (file.source) {
      const iov = iovs.find((v) => v.length);
      if (!iov) return 0;
      const chunk = file.source.read(iov.length); // blocks until data or the stream's end
      iov.set(chunk);
      return chunk.length;
    }
    let pos = at ?? d.pos;
    for (const iov of iovs) {
      const n = Math.max(0, Math.min(iov.length, file.size - pos));
      iov.set(file.data.subarray(pos, pos + n));
      pos += n;
      total += n;
      if (n < iov.length) break;
    }
    file.atim = nowNs();
    if (at === undefined) d.pos = pos;
    return total;
  }

  /** What wasi-hostfs.js's calls need of this instance. */
  #kit() {
    return {
      fd: (fd, rights) => this.#fd(fd, rights), string: (ptr, len) => this.#string(ptr, len),
      slice: (ptr, len) => this.#slice(ptr, len), iovs: (ptr, count) => this.#iovs(ptr, count),
      view: () => this.#view, u32: (ptr, v) => this.#view.setUint32(ptr, v, true),
      u64: (ptr, v) => this.#view.setBigUint64(ptr, BigInt(v), true),
      open: (desc) => this.#newFd(desc), fds: this.fds,
      descriptor: (options) => new Descriptor(options), R, FILE_RIGHTS, DIR_RIGHTS,
    };
  }

  /** The host-folder call for `name` when one of its descriptors is on a host folder. */
  #hostCall(host, name, args) {
    const at = HOST_CALLS[name];
    if (!at) return null;
    for (const i of at) {
      if (this.fds.get(args[i])?.node instanceof HostNode) return host[name];
    }
    return null;
  }

  #bind() {
    const calls = this.#calls();
    const host = this.preopens.some((p) => p.host) ? hostCalls(this.#kit()) : null;
    const bound = {};
    for (const [name, fn] of Object.entries(calls)) {
      bound[name] = (...a) => {
        try {
          return ((host && this.#hostCall(host, name, a)) || fn)(...a) ?? E.SUCCESS;
        } catch (e) {
          if (e instanceof Fail || e instanceof HostFail) return e.errno;
          if (e instanceof RangeError && !(e instanceof WebAssembly.RuntimeError)) return E.FAULT;
          throw e;
        }
      };
    }
    return bound;
  }

  #calls() {
    const self = this;
    const u32 = (ptr, value) => self.#view.setUint32(ptr, value, true);
    const u64 = (ptr, value) => self.#view.setBigUint64(ptr, BigInt(value), true);

    const strings = (list, ptrs, buf) => {
      const view = self.#view;
      const bytes = self.#bytes;
      for (const s of list) {
        view.setUint32(ptrs, buf, true);
        bytes.set(s, buf);
        ptrs += 4;
        buf += s.length;
      }
    };
    const sizes = (list, countPtr, sizePtr) => {
      u32(countPtr, list.length);
      u32(sizePtr, list.reduce((n, s) => n + s.length, 0));
    };

    return {
      args_get: (ptrs, buf) => strings(self.args, ptrs, buf),
      args_sizes_get: (c, s) => sizes(self.args, c, s),
      environ_get: (ptrs, buf) => strings(self.env, ptrs, buf),
      environ_sizes_get: (c, s) => sizes(self.env, c, s),

      clock_res_get: (id, ptr) => {
        checkEnum('clock_res_get', 'Clockid', id, 3);
        if (id > 1) fail(E.BADF); // no CPU-time clocks, as in wasmtime
        u64(ptr, 1000n);
      },
      clock_time_get: (id, _precision, ptr) => {
        checkEnum('clock_time_get', 'Clockid', id, 3);
        if (id > 1) fail(E.BADF);
        u64(ptr, id === 0 ? nowNs() : BigInt(Math.round(performance.now() * 1e6)));
      },

      fd_advise: (fd, _off, _len, advice) => {
        checkEnum('fd_advise', 'Advice', advice, 5);
        const d = self.#fd(fd, R.FD_ADVISE);
        if (d.node instanceof Dir) fail(E.BADF);
      },
      fd_allocate: (fd) => { // wasmtime (preview1 over preview2) has no allocate
        self.#fileFd(fd, R.FD_ALLOCATE);
        fail(E.NOTSUP);
      },
      fd_close: (fd) => {
        self.#fd(fd);
        self.fds.delete(fd);
      },
      fd_datasync: (fd) => { self.#fd(fd, R.FD_DATASYNC); self.sync(); },
      fd_sync: (fd) => { self.#fd(fd, R.FD_SYNC); self.sync(); },
      fd_fdstat_get: (fd, ptr) => {
        const d = self.#fd(fd);
        const v = self.#view;
        v.setUint8(ptr, d.filetype);
        v.setUint8(ptr + 1, 0);
        v.setUint16(ptr + 2, d.flags, true);
        v.setUint32(ptr + 4, 0, true);
        const [base, inheriting] = reportedRights(d);
        v.setBigUint64(ptr + 8, base, true);
        v.setBigUint64(ptr + 16, inheriting, true);
      },
      fd_fdstat_set_flags: (fd, flags) => {
        const d = self.#fd(fd, R.FD_FDSTAT_SET_FLAGS);
        if (flags & ~31) fail(E.INVAL);
        if (d.node instanceof Dir) {
          d.flags = flags;
          return;
        }
        d.flags = (d.flags & ~(FDFLAGS.APPEND | FDFLAGS.NONBLOCK)) |
          (flags & (FDFLAGS.APPEND | FDFLAGS.NONBLOCK));
      },
      fd_fdstat_set_rights: (fd) => {
        fail(self.#fd(fd).stream ? E.BADF : E.NOTSUP);
      },
      fd_filestat_get: (fd, ptr) => {
        const d = self.#fd(fd, R.FD_FILESTAT_GET);
        self.#filestat(ptr, d.node, d.filetype);
      },
      fd_filestat_set_size: (fd, size) => {
        const d = self.#fileFd(fd, R.FD_FILESTAT_SET_SIZE);
        if (d.stream || !d.writable) fail(E.BADF);
        if (size > BigInt(MAX_FILE)) fail(E.FBIG);
        d.node.resize(Number(size));
        d.node.mtim = d.node.ctim = nowNs();
        self.#touch(d);
      },
      fd_filestat_set_times: (fd, atim, mtim, flags) => {
        const d = self.#fd(fd, R.FD_FILESTAT_SET_TIMES);
        self.#setTimes(d.node, atim, mtim, flags);
      },
      fd_pread: (fd, iovs, count, offset, nreadPtr) => {
        const d = self.#fileFd(fd, R.FD_READ | R.FD_SEEK);
        if (d.stream) fail(d.readable ? E.SPIPE : E.BADF);
        if (!d.readable) fail(E.BADF);
        u32(nreadPtr, self.#read(d, self.#iovs(iovs, count), Number(offset)));
      },
      fd_pwrite: (fd, iovs, count, offset, nPtr) => {
        const d = self.#fileFd(fd, R.FD_WRITE | R.FD_SEEK);
        if (d.stream) fail(d.writable ? E.SPIPE : E.BADF);
        if (!d.writable) fail(E.BADF);
        u32(nPtr, self.#write(d, self.#iovs(iovs, count), Number(offset)));
      },
      fd_read: (fd, iovs, count, nPtr) => {
        const d = self.#fileFd(fd, R.FD_READ);
        if (!d.readable) fail(E.BADF);
        u32(nPtr, self.#read(d, self.#iovs(iovs, count)));
      },
      fd_write: (fd, iovs, count, nPtr) => {
        const d = self.#fileFd(fd, R.FD_WRITE);
        if (!d.writable) fail(E.BADF);
        u32(nPtr, self.#write(d, self.#iovs(iovs, count)));
      },
      fd_prestat_get: (fd, ptr) => {
        const d = self.#fd(fd);
        if (d.preopen === null) fail(E.BADF);
        u32(ptr, 0);
        u32(ptr + 4, encoder.encode(d.preopen).length);
      },
      fd_prestat_dir_name: (fd, ptr, len) => {
        const d = self.#fd(fd);
        if (d.preopen === null) fail(E.BADF);
        const name = encoder.encode(d.preopen);
        if (len < name.length) fail(E.NAMETOOLONG);
        self.#bytes.set(name, ptr);
      },
      fd_readdir: (fd, buf, len, cookie, usedPtr) => {
        if (self.fds.get(fd)?.node instanceof File) fail(E.BADF); // wasmtime: not ENOTDIR
        const d = self.#dirFd(fd, R.FD_READDIR);
        const entries = [['.', d.node], ['..', d.node], ...d.node.entries];
        const v = self.#view;
        const out = self.#slice(buf, len);
        let used = 0;
        for (let i = Number(cookie); i < entries.length && used < len; i++) {
          const [name, node] = entries[i];
          const nameBytes = encoder.encode(name);
          const head = new Uint8Array(24);
          const hv = new DataView(head.buffer);
          hv.setBigUint64(0, BigInt(i + 1), true);
          hv.setBigUint64(8, node.ino, true);
          hv.setUint32(16, nameBytes.length, true);
          hv.setUint8(20, node.filetype);
          const entry = new Uint8Array(24 + nameBytes.length);
          entry.set(head);
          entry.set(nameBytes, 24);
          const n = Math.min(entry.length, len - used);
          out.set(entry.subarray(0, n), used);
          used += n;
        }
        void v;
        u32(usedPtr, used);
      },
      fd_renumber: (from, to) => {
        const d = self.#fd(from);
        self.#fd(to);
        self.fds.set(to, d);
        if (from !== to) self.fds.delete(from);
      },
      fd_seek: (fd, offset, whence, ptr) => {
        checkEnum('fd_seek', 'Whence', whence, 2);
        const d = self.#fd(fd, whence === 1 && offset === 0n ? R.FD_TELL : R.FD_SEEK);
        if (d.stream) fail(E.SPIPE);
        if (d.node instanceof Dir) fail(E.BADF);
        const base = whence === 0 ? 0 : whence === 1 ? d.pos : whence === 2 ? d.node.size :
          fail(E.INVAL);
        const pos = BigInt(base) + offset;
        if (pos < 0n) fail(E.INVAL);
        if (pos > BigInt(MAX_FILE)) fail(E.FBIG);
        d.pos = Number(pos);
        u64(ptr, d.pos);
      },
      fd_tell: (fd, ptr) => {
        const d = self.#fd(fd, R.FD_TELL);
        if (d.stream) fail(E.SPIPE);
        if (d.node instanceof Dir) fail(E.BADF);
        u64(ptr, d.pos);
      },

      path_create_directory: (fd, ptr, len) => {
        const d = self.#dirFd(fd, R.PATH_CREATE_DIRECTORY);
        self.#needWritable(d);
        const r = self.#resolve(d, self.#string(ptr, len), false);
        if (r.node !== undefined) fail(E.EXIST);
        self.#touch(d);
        r.parent.entries.set(r.name, new Dir());
        r.parent.mtim = nowNs();
      },
      path_filestat_get: (fd, flags, ptr, len, out) => {
        const d = self.#dirFd(fd, R.PATH_FILESTAT_GET);
        const r = self.#resolve(d, self.#string(ptr, len), (flags & 1) !== 0);
        if (r.node === undefined) fail(E.NOENT);
        if (r.slash && !(r.node instanceof Dir)) fail(E.NOTDIR);
        self.#filestat(out, r.node, r.node.filetype);
      },
      path_filestat_set_times: (fd, flags, ptr, len, atim, mtim, fst) => {
        const d = self.#dirFd(fd, R.PATH_FILESTAT_SET_TIMES);
        const r = self.#resolve(d, self.#string(ptr, len), (flags & 1) !== 0);
        if (r.node === undefined) fail(E.NOENT);
        if (r.slash && !(r.node instanceof Dir)) fail(E.NOTDIR);
        self.#setTimes(r.node, atim, mtim, fst);
      },
      path_link: (oldFd, oldFlags, oldPtr, oldLen, newFd, newPtr, newLen) => {
        const od = self.#dirFd(oldFd, R.PATH_LINK_SOURCE);
        const nd = self.#dirFd(newFd, R.PATH_LINK_TARGET);
        self.#needWritable(nd); // as wasmtime: a read-only folder refuses before any lookup
        const src = self.#resolve(od, self.#string(oldPtr, oldLen), (oldFlags & 1) !== 0);
        const dst = self.#resolve(nd, self.#string(newPtr, newLen), false);
        if (src.node === undefined) fail(E.NOENT);
        if (dst.node !== undefined) fail(E.EXIST);
        if (src.node instanceof Dir) fail(E.PERM);
        if (src.slash || dst.slash) fail(src.slash && !(src.node instanceof Dir) ? E.NOTDIR : E.NOENT);
        self.#touch(nd);
        dst.parent.entries.set(dst.name, src.node);
        src.node.nlink += 1n;
        src.node.ctim = nowNs();
      },
      path_open: (fd, dirflags, ptr, len, oflags, base, _inheriting, fdflags, outPtr) => {
        const d = self.#dirFd(fd, R.PATH_OPEN);
        const path = self.#string(ptr, len);
        const follow = (dirflags & 1) !== 0;
        const wantsWrite = (base & (R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE)) !== 0n ||
          (fdflags & FDFLAGS.APPEND) !== 0;
        // as wasmtime: a read-only folder refuses creating, truncating and writing before any
        // lookup (EPERM even where the path does not exist)
        if ((wantsWrite || oflags & (OFLAGS.CREAT | OFLAGS.TRUNC)) && !d.writable) fail(E.PERM);
        const r = self.#resolve(d, path, follow);
        let node = r.node;
        if (oflags & OFLAGS.CREAT) {
          if ((d.rights & R.PATH_CREATE_FILE) === 0n) fail(E.NOTCAPABLE);
          if (node !== undefined && oflags & OFLAGS.EXCL) fail(E.EXIST);
          if (node === undefined) {
            if (r.slash || oflags & OFLAGS.DIRECTORY) fail(r.slash ? E.ISDIR : E.INVAL);
            self.#touch(d);
            node = new File();
            r.parent.entries.set(r.name, node);
            r.parent.mtim = nowNs();
          }
        }
        if (node === undefined) fail(E.NOENT);
        if (node instanceof Symlink) fail(oflags & OFLAGS.DIRECTORY ? E.NOTDIR : E.LOOP);
        if ((oflags & OFLAGS.DIRECTORY || r.slash) && !(node instanceof Dir)) fail(E.NOTDIR);
        if (node instanceof Dir) {
          if (wantsWrite || oflags & OFLAGS.TRUNC) fail(E.ISDIR);
        }
        if (oflags & OFLAGS.TRUNC) {
          if ((d.rights & R.PATH_FILESTAT_SET_SIZE) === 0n) fail(E.NOTCAPABLE);
        }
        const isDir = node instanceof Dir;
        const mask = isDir ? DIR_RIGHTS : FILE_RIGHTS;
        const desc = new Descriptor({
          node,
          writable: !isDir && wantsWrite,
          readable: isDir || (base & (R.FD_READ | R.FD_READDIR)) !== 0n || !wantsWrite,
          rights: mask, // what the descriptor may do follows from its mode, as in wasmtime
          inheriting: DIR_RIGHTS | FILE_RIGHTS,
          root: d.root,
          flags: fdflags & (FDFLAGS.APPEND | FDFLAGS.NONBLOCK | FDFLAGS.SYNC | FDFLAGS.DSYNC |
            FDFLAGS.RSYNC),
        });
        if (isDir) desc.writable = d.writable; // a sub-directory keeps its preopen's mode
        desc.dirWritable = d.writable;
        if (oflags & OFLAGS.TRUNC) {
          self.#touch(d);
          node.resize(0);
          node.mtim = node.ctim = nowNs();
        }
        u32(outPtr, self.#newFd(desc));
      },
      path_readlink: (fd, ptr, len, buf, bufLen, usedPtr) => {
        const d = self.#dirFd(fd, R.PATH_READLINK);
        const r = self.#resolve(d, self.#string(ptr, len), false);
        if (r.node === undefined) fail(E.NOENT);
        if (!(r.node instanceof Symlink)) fail(E.INVAL);
        const target = encoder.encode(r.node.target);
        const n = Math.min(target.length, bufLen);
        self.#slice(buf, bufLen).set(target.subarray(0, n));
        u32(usedPtr, n);
      },
      path_remove_directory: (fd, ptr, len) => {
        const d = self.#dirFd(fd, R.PATH_REMOVE_DIRECTORY);
        self.#needWritable(d);
        const r = self.#resolve(d, self.#string(ptr, len), false);
        if (r.name === '.') fail(E.INVAL); // as Linux's rmdir(".")
        if (r.node === undefined) fail(E.NOENT);
        if (!(r.node instanceof Dir)) fail(E.NOTDIR);
        if (r.node.entries.size) fail(E.NOTEMPTY);
        self.#touch(d);
        r.parent.entries.delete(r.name);
        r.parent.mtim = nowNs();
      },
      path_rename: (fd, oldPtr, oldLen, newFd, newPtr, newLen) => {
        const od = self.#dirFd(fd, R.PATH_RENAME_SOURCE);
        const nd = self.#dirFd(newFd, R.PATH_RENAME_TARGET);
        self.#needWritable(od);
        self.#needWritable(nd);
        const src = self.#resolve(od, self.#string(oldPtr, oldLen), false);
        const dst = self.#resolve(nd, self.#string(newPtr, newLen), false);
        if (src.name === '.' || dst.name === '.') fail(E.BUSY);
        if (src.node === undefined) fail(E.NOENT);
        const srcDir = src.node instanceof Dir;
        if ((src.slash || dst.slash) && !srcDir) fail(E.NOTDIR);
        if (dst.node !== undefined) {
          if (dst.node === src.node) return;
          if (srcDir && !(dst.node instanceof Dir)) fail(E.NOTDIR);
          if (!srcDir && dst.node instanceof Dir) fail(E.ISDIR);
          if (dst.node instanceof Dir && dst.node.entries.size) fail(E.NOTEMPTY);
        }
        if (srcDir && dst.stack.includes(src.node)) fail(E.INVAL);
        self.#touch(od);
        self.#touch(nd);
        src.parent.entries.delete(src.name);
        dst.parent.entries.set(dst.name, src.node);
        src.parent.mtim = dst.parent.mtim = src.node.ctim = nowNs();
      },
      path_symlink: (oldPtr, oldLen, fd, newPtr, newLen) => {
        const target = self.#string(oldPtr, oldLen);
        const d = self.#dirFd(fd, R.PATH_SYMLINK);
        self.#needWritable(d);
        const r = self.#resolve(d, self.#string(newPtr, newLen), false);
        if (r.node !== undefined) fail(E.EXIST);
        if (r.slash) fail(E.NOENT);
        if (target.startsWith('/')) fail(E.PERM);
        self.#touch(d);
        r.parent.entries.set(r.name, new Symlink(target));
        r.parent.mtim = nowNs();
      },
      path_unlink_file: (fd, ptr, len) => {
        const d = self.#dirFd(fd, R.PATH_UNLINK_FILE);
        self.#needWritable(d);
        const r = self.#resolve(d, self.#string(ptr, len), false);
        if (r.node === undefined) fail(E.NOENT);
        if (r.node instanceof Dir) fail(E.ISDIR);
        if (r.slash) fail(E.NOTDIR);
        self.#touch(d);
        r.parent.entries.delete(r.name);
        r.node.nlink -= 1n;
        r.parent.mtim = r.node.ctim = nowNs();
      },

      poll_oneoff: (inPtr, outPtr, count, nPtr) => {
        if (count === 0) fail(E.INVAL);
        const v = self.#view;
        const subs = [];
        for (let i = 0; i < count; i++) {
          const p = inPtr + 48 * i;
          subs.push({userdata: v.getBigUint64(p, true), tag: v.getUint8(p + 8),
            clock: v.getUint32(p + 16, true), timeout: v.getBigUint64(p + 24, true),
            flags: v.getUint16(p + 40, true), fd: v.getUint32(p + 16, true)});
        }
        const events = [];
        const event = (s, errno, nbytes = 0n, flags = 0) => events.push({s, errno, nbytes, flags});
        // stdin ready: as wasmtime, no byte count, and the hangup flag once it is drained and closed
        const stdinReady = (s) => event(s, E.SUCCESS, 0n, self.io.stdin.ended() ? 1 : 0);
        let deadline = Infinity; // ms, performance.now() time
        let deadlineSub = null;
        let stdinSubs = [];
        for (const s of subs) {
          if (s.tag === 0) {
            if (s.clock > 3) { event(s, E.INVAL); continue; }
            let ms = Number(s.timeout) / 1e6;
            if (s.flags & 1) {
              ms = s.clock === 0 ? ms - (performance.timeOrigin + performance.now())
                : ms - performance.now();
            }
            const at = performance.now() + Math.max(0, ms);
            if (at < deadline) { deadline = at; deadlineSub = s; }
          } else if (s.tag === 1 || s.tag === 2) {
            const d = self.fds.get(s.fd);
            if (!d) { event(s, E.BADF); continue; }
            if (!d.stream && (d.rights & R.POLL_FD_READWRITE) === 0n) {
              event(s, E.NOTCAPABLE);
              continue;
            }
            if (s.tag === 1 && d.stream === 'stdin') { stdinSubs.push(s); continue; }
            if (s.tag === 1 && d.node instanceof File) {
              event(s, E.SUCCESS, BigInt(Math.max(0, d.node.size - d.pos)));
            } else if (s.tag === 1 && d.stream) {
              event(s, E.BADF);
            } else if (s.tag === 2 && !d.writable && !d.stream) {
              event(s, E.BADF);
            } else event(s, E.SUCCESS);
          } else {
            event(s, E.INVAL);
          }
        }
        if (self.dirty.size) self.sync();
        if (stdinSubs.length && !events.length) {
          const wait = deadline - performance.now();
          if (self.io.stdin.ready(Math.max(0, wait))) stdinSubs.forEach(stdinReady);
        } else if (stdinSubs.length && self.io.stdin.ready(0)) {
          stdinSubs.forEach(stdinReady);
        }
        if (!events.length && deadlineSub) {
          const wait = deadline - performance.now();
          if (wait > 0) self.io.sleep(wait);
          for (const s of subs) {
            if (s.tag === 0 && s.clock <= 3) event(s, E.SUCCESS);
          }
          // only the subscriptions that have expired
          events.splice(0, events.length, ...events.filter(({s}) => s === deadlineSub ||
            s.tag !== 0));
        }
        for (const [i, {s, errno, nbytes, flags}] of events.entries()) {
          const p = outPtr + 32 * i;
          v.setBigUint64(p, s.userdata, true);
          v.setUint16(p + 8, errno, true);
          v.setUint8(p + 10, s.tag);
          for (let k = 11; k < 16; k++) v.setUint8(p + k, 0);
          v.setBigUint64(p + 16, nbytes, true);
          v.setUint16(p + 24, flags, true);
          for (let k = 26; k < 32; k++) v.setUint8(p + k, 0);
        }
        u32(nPtr, events.length);
      },
      proc_exit: (code) => {
        if (code >>> 0 >= 126) throw new WasiTrap('exit with invalid exit status outside of [0..126)');
        throw new WasiExit(code);
      },
      proc_raise: () => fail(E.NOSYS),
      sched_yield: () => {},
      random_get: (ptr, len) => {
        const out = self.#slice(ptr, len);
        for (let i = 0; i < len; i += 65536) {
          crypto.getRandomValues(out.subarray(i, Math.min(len, i + 65536)));
        }
      },
      sock_accept: (fd) => { self.#fd(fd); fail(E.NOTSOCK); },
      sock_recv: (fd) => { self.#fd(fd); fail(E.NOTSOCK); },
      sock_send: (fd) => { self.#fd(fd); fail(E.NOTSOCK); },
      sock_shutdown: (fd) => { self.#fd(fd); fail(E.NOTSOCK); },
    };
  }
}

// -- memory limit --------------------------------------------------------------------------------

function readLeb(bytes, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [value, pos];
  }
}

function leb(value) {
  const out = [];
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value) b |= 0x80;
    out.push(b);
  } while (value);
  return out;
}

/** The module's bytes with every defined memory's maximum lowered to `limit` bytes, so that
 * memory.grow past it fails (malloc returns NULL) as it does under the native host's limit. */
export function limitMemory(bytes, limit) {
  const pages = Math.floor(limit / 65536);
  const parts = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, body] = readLeb(bytes, pos + 1);
    const end = body + size;
    if (id !== 5) {
      parts.push(bytes.subarray(pos, end));
    } else {
      let [count, p] = readLeb(bytes, body);
      const out = leb(count);
      for (let i = 0; i < count; i++) {
        const flags = bytes[p];
        let min;
        let max = Infinity;
        [min, p] = readLeb(bytes, p + 1);
        if (flags & 1) [max, p] = readLeb(bytes, p);
        if (flags & 4) throw new Error('memory64 is not supported');
        out.push(flags | 1, ...leb(min), ...leb(Math.max(min, Math.min(max, pages))));
      }
      parts.push(new Uint8Array([5, ...leb(out.length), ...out]));
    }
    pos = end;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const result = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    result.set(p, at);
    at += p.length;
  }
  return result;
}
