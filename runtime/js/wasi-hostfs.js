/*
 * wvwasi browser engine: host folders lent to page-supplied modules (docs/page-api.md).
 *
 * In the desktop app, a page may give a page-supplied module a folder of the machine (a
 * `requestDirectory()` grant or a `[page] preopens` entry). The module still runs here, in the
 * page's Worker; each WASI call on that folder is posted to the page, which relays it to the app's
 * bridge over its WebSocket (an FS_CALL record; runtime/bridge/hostfs.py answers it beneath the folder
 * with the sandbox rules of native services) and puts the answer in a SharedArrayBuffer the
 * Worker waits on with Atomics.wait (wasi-engine.js `fsReply`). Call and answer: u32 LE JSON
 * length, JSON, bytes. Descriptors of such a folder hold a `HostNode` (the host's handle number)
 * instead of an in-memory node; wasi-core.js hands every call on them to `hostCalls`.
 */
import {jsonPayload, readJson} from './wasi-wire.js';

/** The most bytes one call moves (runtime/bridge/hostfs.py MAX_IO): bigger writes are split. */
const MAX_IO = 512 << 10;
/** The largest answer: u32 + JSON (runtime/bridge/hostfs.py MAX_JSON) + MAX_IO bytes. */
export const REPLY_BYTES = 4 + (64 << 10) + MAX_IO;
const E = {BADF: 8, FAULT: 21, INVAL: 28, IO: 29, ISDIR: 31, NOTDIR: 54, NOTCAPABLE: 76,
  XDEV: 75};
const encoder = new TextEncoder();

/** Which argument of each call is the descriptor that decides (two for rename/link). */
export const HOST_CALLS = {
  fd_advise: [0], fd_allocate: [0], fd_close: [0], fd_datasync: [0], fd_sync: [0],
  fd_filestat_get: [0], fd_filestat_set_size: [0], fd_filestat_set_times: [0], fd_pread: [0],
  fd_pwrite: [0], fd_read: [0], fd_write: [0], fd_readdir: [0], fd_renumber: [0, 1],
  fd_seek: [0], fd_tell: [0], path_create_directory: [0], path_filestat_get: [0],
  path_filestat_set_times: [0], path_link: [0, 4], path_open: [0], path_readlink: [0],
  path_remove_directory: [0], path_rename: [0, 3], path_symlink: [2], path_unlink_file: [0],
};

/** A folder on the host: host folder number `index` of this instance, answered in `shared`
 * (Int32 [state: 0 waiting / 1 answered, length or -1 when the relay failed], then the bytes). */
export class HostFolder {
  constructor({shared, index}, mode) {
    this.ctrl = new Int32Array(shared, 0, 2);
    this.data = new Uint8Array(shared, 8);
    this.index = index;
    this.mode = mode;
  }

  /** One call: the answer's JSON (errno 0) and bytes; a failed call throws its errno. */
  call(head, data) {
    const body = jsonPayload(head, data ? [data] : []);
    Atomics.store(this.ctrl, 0, 0);
    postMessage({type: 'fs', index: this.index, body}, [body.buffer]);
    Atomics.wait(this.ctrl, 0, 0); // the guest waits, as for a native call
    const length = Atomics.load(this.ctrl, 1);
    if (length < 4) throw new HostFail(E.IO);
    const [answer, bytes] = readJson(this.data.slice(0, length));
    if (answer.errno) throw new HostFail(answer.errno);
    return [answer, bytes];
  }
}

export class HostFail extends Error {
  constructor(errno) {
    super(`errno ${errno}`);
    this.errno = errno;
  }
}

/** What a descriptor of a host folder points at: handle `handle` of `folder`. */
export class HostNode {
  constructor(folder, handle, filetype) {
    this.folder = folder;
    this.handle = handle;
    this.filetype = filetype;
  }
  call(op, head = {}, data) {
    return this.folder.call({op, h: this.handle, ...head}, data);
  }
}

/**
 * The WASI calls on host-folder descriptors. `k` is the engine's toolkit (wasi-core.js):
 * fd(fd, rights), string(ptr, len), slice(ptr, len), iovs(ptr, count), view(), u32, u64,
 * open(desc) -> fd, fds (the table), descriptor(options), R (rights), FILE_RIGHTS, DIR_RIGHTS.
 */
export function hostCalls(k) {
  const {R} = k;
  const host = (fd, rights = 0n) => {
    const d = k.fd(fd, rights);
    return d;
  };
  const file = (fd, rights) => {
    const d = host(fd, rights);
    if (d.node.filetype === 3) throw new HostFail(E.ISDIR);
    return d;
  };
  const dir = (fd, rights) => {
    const d = k.fd(fd);
    if (!(d.node instanceof HostNode) || d.node.filetype !== 3) {
      throw new HostFail(d.node instanceof HostNode ? E.NOTDIR : E.XDEV);
    }
    if ((d.rights & rights) !== rights) throw new HostFail(E.NOTCAPABLE);
    return d;
  };
  const filestat = (ptr, st) => {
    const v = k.view();
    v.setBigUint64(ptr, BigInt(st.dev), true);
    v.setBigUint64(ptr + 8, BigInt(st.ino), true);
    v.setUint8(ptr + 16, st.type);
    for (let i = 17; i < 24; i++) v.setUint8(ptr + i, 0);
    v.setBigUint64(ptr + 24, BigInt(st.nlink), true);
    v.setBigUint64(ptr + 32, BigInt(st.size), true);
    v.setBigUint64(ptr + 40, BigInt(st.atim), true);
    v.setBigUint64(ptr + 48, BigInt(st.mtim), true);
    v.setBigUint64(ptr + 56, BigInt(st.ctim), true);
  };
  const times = (atim, mtim, flags) => {
    if ((flags & 1 && flags & 2) || (flags & 4 && flags & 8) || flags & ~15) {
      throw new HostFail(E.INVAL);
    }
    return {atim: flags & 1 ? String(atim) : null, mtim: flags & 4 ? String(mtim) : null,
      atimNow: !!(flags & 2), mtimNow: !!(flags & 8)};
  };
  const read = (d, iovsPtr, count, at) => {
    const iovs = k.iovs(iovsPtr, count);
    const want = Math.min(MAX_IO, iovs.reduce((n, v) => n + v.length, 0));
    const [, bytes] = d.node.call('read', {len: want, at: at === undefined ? null : String(at)});
    let pos = 0;
    for (const iov of iovs) {
      if (pos >= bytes.length) break;
      const n = Math.min(iov.length, bytes.length - pos);
      iov.set(bytes.subarray(pos, pos + n));
      pos += n;
    }
    return bytes.length;
  };
  const write = (d, iovsPtr, count, at) => {
    const iovs = k.iovs(iovsPtr, count);
    const total = iovs.reduce((n, v) => n + v.length, 0);
    const all = new Uint8Array(total);
    let pos = 0;
    for (const iov of iovs) {
      all.set(iov, pos);
      pos += iov.length;
    }
    let done = 0;
    const append = (d.flags & 1) !== 0;
    do { // the host takes MAX_IO bytes a call
      const chunk = all.subarray(done, done + MAX_IO);
      const [{n}] = d.node.call('write', {append,
        at: at === undefined ? null : String(BigInt(at) + BigInt(done))}, chunk);
      done += n;
      if (n < chunk.length) break;
    } while (done < total);
    return done;
  };
  const release = (d) => {
    if (d.node.handle !== 0) {
      try { d.node.call('close'); } catch { /* the mount has ended */ }
    }
  };

  return {
    fd_advise: (fd, _off, _len, advice) => {
      const d = host(fd, R.FD_ADVISE);
      if (d.node.filetype === 3) throw new HostFail(E.BADF);
      if (advice > 5) throw new HostFail(E.INVAL);
    },
    fd_allocate: (fd, offset, len) => {
      const d = file(fd, R.FD_ALLOCATE);
      if (!d.writable) throw new HostFail(E.BADF);
      d.node.call('truncate', {size: String(offset + len), grow: true});
    },
    fd_close: (fd) => {
      const d = k.fd(fd);
      release(d);
      k.fds.delete(fd);
    },
    fd_datasync: (fd) => { host(fd, R.FD_DATASYNC).node.call('sync'); },
    fd_sync: (fd) => { host(fd, R.FD_SYNC).node.call('sync'); },
    fd_filestat_get: (fd, ptr) => {
      const [st] = host(fd, R.FD_FILESTAT_GET).node.call('stat');
      filestat(ptr, st);
    },
    fd_filestat_set_size: (fd, size) => {
      const d = file(fd, R.FD_FILESTAT_SET_SIZE);
      if (!d.writable) throw new HostFail(E.BADF);
      d.node.call('truncate', {size: String(size)});
    },
    fd_filestat_set_times: (fd, atim, mtim, flags) => {
      host(fd, R.FD_FILESTAT_SET_TIMES).node.call('times', times(atim, mtim, flags));
    },
    fd_pread: (fd, iovs, count, offset, nPtr) => {
      const d = file(fd, R.FD_READ | R.FD_SEEK);
      if (!d.readable) throw new HostFail(E.BADF);
      k.u32(nPtr, read(d, iovs, count, offset));
    },
    fd_pwrite: (fd, iovs, count, offset, nPtr) => {
      const d = file(fd, R.FD_WRITE | R.FD_SEEK);
      if (!d.writable) throw new HostFail(E.BADF);
      k.u32(nPtr, write(d, iovs, count, offset));
    },
    fd_read: (fd, iovs, count, nPtr) => {
      const d = file(fd, R.FD_READ);
      if (!d.readable) throw new HostFail(E.BADF);
      k.u32(nPtr, read(d, iovs, count));
    },
    fd_write: (fd, iovs, count, nPtr) => {
      const d = file(fd, R.FD_WRITE);
      if (!d.writable) throw new HostFail(E.BADF);
      k.u32(nPtr, write(d, iovs, count));
    },
    fd_readdir: (fd, buf, len, cookie, usedPtr) => {
      const d = dir(fd, R.FD_READDIR);
      const out = k.slice(buf, len);
      let used = 0;
      let next = Number(cookie);
      while (used < len) {
        const [{entries}] = d.node.call('readdir', {cookie: next,
          count: Math.min(4096, Math.ceil((len - used) / 24) + 1)});
        if (!entries.length) break;
        for (const [name, type, ino] of entries) {
          const nameBytes = encoder.encode(name);
          const entry = new Uint8Array(24 + nameBytes.length);
          const v = new DataView(entry.buffer);
          v.setBigUint64(0, BigInt(++next), true);
          v.setBigUint64(8, BigInt(ino), true);
          v.setUint32(16, nameBytes.length, true);
          v.setUint8(20, type);
          entry.set(nameBytes, 24);
          const n = Math.min(entry.length, len - used);
          out.set(entry.subarray(0, n), used);
          used += n;
          if (used >= len) break;
        }
      }
      k.u32(usedPtr, used);
    },
    fd_renumber: (from, to) => {
      const d = k.fd(from);
      const old = k.fd(to);
      if (from === to) return;
      if (old.node instanceof HostNode) release(old);
      k.fds.set(to, d);
      k.fds.delete(from);
    },
    fd_seek: (fd, offset, whence, ptr) => {
      const d = host(fd, whence === 1 && offset === 0n ? R.FD_TELL : R.FD_SEEK);
      if (d.node.filetype === 3) throw new HostFail(E.BADF);
      if (whence > 2) throw new HostFail(E.INVAL);
      const [{pos}] = d.node.call('seek', {offset: String(offset), whence});
      k.u64(ptr, BigInt(pos));
    },
    fd_tell: (fd, ptr) => {
      const d = host(fd, R.FD_TELL);
      if (d.node.filetype === 3) throw new HostFail(E.BADF);
      const [{pos}] = d.node.call('seek', {offset: '0', whence: 1});
      k.u64(ptr, BigInt(pos));
    },

    path_create_directory: (fd, ptr, len) => {
      dir(fd, R.PATH_CREATE_DIRECTORY).node.call('mkdir', {path: k.string(ptr, len)});
    },
    path_filestat_get: (fd, flags, ptr, len, out) => {
      const [st] = dir(fd, R.PATH_FILESTAT_GET).node.call('pstat',
        {path: k.string(ptr, len), follow: (flags & 1) !== 0});
      filestat(out, st);
    },
    path_filestat_set_times: (fd, flags, ptr, len, atim, mtim, fst) => {
      dir(fd, R.PATH_FILESTAT_SET_TIMES).node.call('times',
        {path: k.string(ptr, len), follow: (flags & 1) !== 0, ...times(atim, mtim, fst)});
    },
    path_link: (oldFd, oldFlags, oldPtr, oldLen, newFd, newPtr, newLen) => {
      const od = dir(oldFd, R.PATH_LINK_SOURCE);
      const nd = dir(newFd, R.PATH_LINK_TARGET);
      if (od.node.folder !== nd.node.folder) throw new HostFail(E.XDEV);
      od.node.call('link', {path: k.string(oldPtr, oldLen), follow: (oldFlags & 1) !== 0,
        h2: nd.node.handle, path2: k.string(newPtr, newLen)});
    },
    path_open: (fd, dirflags, ptr, len, oflags, base, _inheriting, fdflags, outPtr) => {
      const d = dir(fd, R.PATH_OPEN);
      const path = k.string(ptr, len);
      const wantsWrite = (base & (R.FD_WRITE | R.FD_ALLOCATE | R.FD_FILESTAT_SET_SIZE)) !== 0n ||
        (fdflags & 1) !== 0;
      if (oflags & 1 && (d.rights & R.PATH_CREATE_FILE) === 0n) throw new HostFail(E.NOTCAPABLE);
      if (oflags & 8 && (d.rights & R.PATH_FILESTAT_SET_SIZE) === 0n) {
        throw new HostFail(E.NOTCAPABLE);
      }
      const readable = (base & (R.FD_READ | R.FD_READDIR)) !== 0n || !wantsWrite;
      const [{h, type}] = d.node.call('open', {path, follow: (dirflags & 1) !== 0,
        creat: !!(oflags & 1), directory: !!(oflags & 2), excl: !!(oflags & 4),
        trunc: !!(oflags & 8), write: wantsWrite, read: readable});
      const isDir = type === 3;
      const desc = k.descriptor({
        node: new HostNode(d.node.folder, h, type),
        writable: isDir ? d.writable : wantsWrite,
        readable: isDir || readable,
        rights: isDir ? k.DIR_RIGHTS : k.FILE_RIGHTS, // rights do not narrow (wasi-core.js)
        inheriting: k.DIR_RIGHTS | k.FILE_RIGHTS,
        root: d.root,
        flags: fdflags & (1 | 4 | 16 | 2 | 8),
      });
      try {
        k.u32(outPtr, k.open(desc));
      } catch (e) {
        release(desc);
        throw e;
      }
    },
    path_readlink: (fd, ptr, len, buf, bufLen, usedPtr) => {
      const [, target] = dir(fd, R.PATH_READLINK).node.call('readlink',
        {path: k.string(ptr, len)});
      const n = Math.min(target.length, bufLen);
      k.slice(buf, bufLen).set(target.subarray(0, n));
      k.u32(usedPtr, n);
    },
    path_remove_directory: (fd, ptr, len) => {
      dir(fd, R.PATH_REMOVE_DIRECTORY).node.call('rmdir', {path: k.string(ptr, len)});
    },
    path_rename: (fd, oldPtr, oldLen, newFd, newPtr, newLen) => {
      const od = dir(fd, R.PATH_RENAME_SOURCE);
      const nd = dir(newFd, R.PATH_RENAME_TARGET);
      if (od.node.folder !== nd.node.folder) throw new HostFail(E.XDEV);
      od.node.call('rename', {path: k.string(oldPtr, oldLen), h2: nd.node.handle,
        path2: k.string(newPtr, newLen)});
    },
    path_symlink: (oldPtr, oldLen, fd, newPtr, newLen) => {
      const target = k.string(oldPtr, oldLen);
      dir(fd, R.PATH_SYMLINK).node.call('symlink', {target, path: k.string(newPtr, newLen)});
    },
    path_unlink_file: (fd, ptr, len) => {
      dir(fd, R.PATH_UNLINK_FILE).node.call('unlink', {path: k.string(ptr, len)});
    },
  };
}
