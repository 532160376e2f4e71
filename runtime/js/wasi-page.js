/*
 * wvwasi: page-supplied modules (`new WasiWorker(url | Module | bytes)`, `WasiWorker.register`).
 *
 * wvwasi.js sends the records of page-supplied workers here instead of to the app's bridge, on a
 * second in-page channel: the same protocol and the same answering code as a web build's services
 * (wasi-web.js), so events, streams, flow control and errors are those of manifest services. What
 * records cannot carry (the compiled module, `vfs` streams and Blobs) waits in `jobs`, a Map that
 * wvwasi.js fills under the name each SPAWN/RUN record gives as its service. Each instance runs
 * in its own Worker with the browser engine, in the desktop app as on the web: nothing a page
 * supplies runs natively. Host folders the app lent it (`grants`, `preopens` options; desktop
 * app only) are preopens whose calls the Worker posts here and wvwasi.js relays to the bridge
 * (wasi-hostfs.js). Docs: docs/page-api.md ("Page-supplied modules").
 */
import {WasiInstance, canBlock} from './wasi-engine.js';
import {LocalBridge, Refused, readGrant} from './wasi-web.js';

// A picked folder lent on the web is copied (wasi-web.js readGrant): its bounds for
// page-supplied modules, which have no manifest limits (docs/web.md).
const COPY_LIMITS = {files: 10000, files_size: 256 << 20};

/** Answer wvwasi.js's records for page-supplied workers (like `serve` in wasi-web.js). */
export function serve(socket, config, jobs) {
  const bridge = new PageBridge(socket, config, jobs);
  socket.send = (frame) => bridge.receive(frame);
  socket.readyState = 1; // WebSocket.OPEN
  queueMicrotask(() => socket.onopen?.());
}

class PageBridge extends LocalBridge {
  constructor(socket, config, jobs) {
    super(socket, config);
    this.jobs = jobs;
  }

  /** The job a record names (each is used once): {name, ipc, module, vfs}. */
  service(key) {
    const job = this.jobs.get(key);
    if (!job) throw new Refused('lookup', `no page-supplied module '${key}'`);
    this.jobs.delete(key);
    return {name: job.name, kind: 'dedicated', ipc: job.ipc, args: [], env: [], preopens: [],
      limits: COPY_LIMITS, scratch: false, job};
  }

  async launch(service, spec, stdin) {
    if (stdin === 'stream' && !canBlock()) {
      throw new Refused('isolation', `module '${service.name}': a worker that reads stdin while ` +
        'it runs needs a cross-origin isolated page (Cross-Origin-Opener-Policy: same-origin and ' +
        'Cross-Origin-Embedder-Policy: require-corp); WasiService.run() does not (docs/web.md)');
    }
    const {preopens, pipes} = await vfsPreopens(service.job.vfs);
    // host folders lent by the app (wvwasi.js mounted them): calls go to the bridge; on the
    // web, picked folders as copies
    const hosts = (service.job.hosts ?? []).filter((h) => !h.copy);
    for (const {guest, mode} of hosts) preopens.push({guest, mode, host: true});
    for (const {guest, mode, copy} of (service.job.hosts ?? []).filter((h) => h.copy)) {
      preopens.push({guest, mode, entries: await readGrant(copy, service, guest),
        grant: {handle: copy, mode}});
    }
    const copies = preopens.filter((p) => p.grant?.mode === 'rw');
    let instance;
    try {
      instance = new WasiInstance({
        name: service.name, module: service.job.module, stdin, preopens, pipes,
        window: stdin === 'stream' ? this.window : 0,
        args: [service.name, ...(spec.args ?? [])], env: spec.env ?? [],
        dump: copies.map((p) => p.guest),
      });
      instance.grants = copies;
    } catch (e) {
      throw new Refused(e.kind ?? 'start', e.message);
    }
    // relay the Worker's calls on host folders to the app (wvwasi.js sends them on its socket)
    instance.onfs = (index, body) => hosts[index].call(body)
      .then((reply) => instance.fsReply(index, reply), () => instance.fsReply(index, null));
    return instance;
  }
}

/** One preopen per folder of the `vfs` paths ([guest path, value]): Blobs and bytes are files,
 * streams are files the page streams (`pipes`); a folder with a WritableStream is writable. */
async function vfsPreopens(vfs) {
  const dirs = new Map();
  for (const [path, value] of vfs) {
    const cut = path.lastIndexOf('/');
    const dir = path.slice(0, cut) || '/';
    if (!dirs.has(dir)) dirs.set(dir, []);
    dirs.get(dir).push([path.slice(cut + 1), path, value]);
  }
  const preopens = [];
  const pipes = [];
  for (const [guest, files] of dirs) {
    const entries = [];
    let mode = 'ro';
    for (const [name, path, value] of files) {
      if (value instanceof ReadableStream || value instanceof WritableStream) {
        if (value instanceof WritableStream) mode = 'rw';
        pipes.push({preopen: preopens.length, path: name, guest: path, stream: value});
        entries.push({path: name, type: 'file'});
      } else {
        const data = value instanceof Blob ? await value.arrayBuffer() : value;
        entries.push({path: name, type: 'file', data});
      }
    }
    preopens.push({guest, mode, entries});
  }
  return {preopens, pipes};
}
