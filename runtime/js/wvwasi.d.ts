// Types for the wvwasi page API (wvwasi.js), which every page of a wvwasi app gets as globals.
// The bridge serves this file at /__wvwasi/wvwasi.d.ts; docs/page-api.md explains the API.

/** What a service is, from the app's wvwasi.toml. */
interface WasiServiceInfo {
  kind: 'task' | 'dedicated' | 'background';
  ipc: 'lines' | 'frames' | 'stream';
  /** `user_grants = true`: spawns may pass folders from `WasiWorker.requestDirectory()`. */
  userGrants: boolean;
  /** `scratch = true`: spawns may ask for a fresh read-write `/scratch` folder. */
  scratch: boolean;
}

/** Data for a file, or for `run`'s stdin. Strings are encoded as UTF-8. */
type WasiData = Blob | ArrayBuffer | ArrayBufferView | string;

/** A folder the user picked, given to one instance at a guest path of the page's choice. */
interface WasiGrantMount {
  grant: DirectoryGrant;
  /** Absolute guest path; default `/picked`. */
  guest?: string;
  /** At most the grant's own mode; default the grant's mode. */
  mode?: 'ro' | 'rw';
}

interface WasiSpawnOptions {
  /** Appended to the manifest's `args`. */
  args?: string[];
  /** Added to the manifest's `env` (cannot override its variables). */
  env?: Record<string, string>;
  /** Read-only files at absolute guest paths, for this instance only. */
  files?: Record<string, WasiData>;
  /** A fresh read-write `/scratch` folder, removed at exit (needs `scratch = true`). */
  scratch?: boolean;
  /** Folders from `requestDirectory()` (needs `user_grants = true`). */
  grants?: Array<DirectoryGrant | WasiGrantMount>;
  /**
   * Files the service writes, handed back when it exits by itself: each guest path's bytes are
   * written into its stream, which is then closed (aborted if the instance failed or never wrote
   * that file). Each path's folder is a fresh read-write folder of this instance. Bounded by
   * `limits.files` (paths, and entries in those folders) and `limits.files_size` (bytes).
   */
  outputs?: Record<string, WritableStream<Uint8Array>>;
}

interface WasiRunOptions extends Omit<WasiSpawnOptions, 'outputs'> {
  stdin?: WasiData;
  /** As for workers; an array of guest paths puts their bytes into the result's `outputs`. */
  outputs?: string[] | Record<string, WritableStream<Uint8Array>>;
}

interface WasiRunResult {
  exitCode: number | null;
  /** stdout decoded as UTF-8. */
  stdout: string;
  /** stderr decoded as UTF-8. */
  stderr: string;
  stdoutBytes: Uint8Array;
  /** With `outputs: [paths]`: the bytes of each of those files the task wrote. */
  outputs?: Record<string, Uint8Array>;
}

/**
 * Why something failed:
 * - `lookup`: no such service; `permission`: the manifest does not allow it;
 * - `limit`: `limits.instances` reached; `start`: the service could not start;
 * - `trap`, `timeout` (`limits.timeout`), `memory` (`limits.memory`), `terminated`: how it ended;
 * - `output`: a stdout message over `limits.message`, or `outputs` over `limits.files` /
 *   `limits.files_size` (also: an `outputs` stream whose file the service never wrote);
 * - `cancelled`: the user closed the folder picker; `unavailable`: no folder picker (`wvwasi serve`);
 * - `bridge`: the connection to the app is lost or was refused; `invalid`: a request too large;
 * - `exit`: a stdin write after the worker ended;
 * - `io`: a `vfs` stream of a page-supplied module failed;
 * - `isolation`: on the web (docs/web.md), a worker that reads stdin while it runs needs a
 *   cross-origin isolated page (COOP/COEP headers).
 */
type WasiErrorKind =
  | 'lookup' | 'permission' | 'limit' | 'start' | 'trap' | 'timeout' | 'memory' | 'terminated'
  | 'output' | 'overflow' | 'exit' | 'cancelled' | 'unavailable' | 'bridge' | 'invalid' | 'isolation'
  | 'io';

declare class WasiError extends Error {
  readonly name: 'WasiError';
  readonly kind: WasiErrorKind;
  /** Set on a rejected `run()`: what the task printed before it failed. */
  readonly exitCode?: number | null;
  readonly stdout?: string;
  readonly stderr?: string;
  readonly stdoutBytes?: Uint8Array;
}

/** The last event of a worker. */
declare class WasiExitEvent extends Event {
  readonly type: 'exit';
  /** The exit status, or null if the instance did not exit by itself (trap, terminate, ...). */
  readonly code: number | null;
  readonly error: WasiError | null;
}

/** An opaque grant for a folder the user picked; valid in this page session only. */
declare class DirectoryGrant {
  private constructor();
  /** The folder's own name (not its path). */
  readonly name: string;
  readonly mode: 'ro' | 'rw';
}

interface WasiWorkerEventMap {
  message: MessageEvent<string | ArrayBuffer>;
  error: ErrorEvent;
  exit: WasiExitEvent;
}

/**
 * One instance of a service (for a `background` service: a connection to its shared instance),
 * used like a Web Worker. Messages are strings for `ipc = "lines"`, ArrayBuffers otherwise.
 */
/** A page-supplied module: a URL (or a string with '/', '.' or ':'), a compiled module or its
 * bytes. Any other string is a manifest service name (docs/page-api.md). */
type WasiModuleSource = URL | string | WebAssembly.Module | ArrayBuffer | ArrayBufferView;

/** `vfs`: absolute guest file path -> a file (bytes), a stream the guest reads (blocking until
 * data, EOF at close) or a stream the guest's writes flow into. */
type WasiVfs = Record<string, WasiData | ReadableStream<Uint8Array | string> | WritableStream<Uint8Array>>;

interface WasiModuleOptions {
  /** argv[0] and the name in messages; default: the URL's file name without `.wasm`. */
  name?: string;
  ipc?: 'lines' | 'frames' | 'stream';
}

/** Host folders lent to a page-supplied module: folders the user picked for this page (on the
 * web as a copy written back at exit), and `[page] preopens` entries by guest path (desktop app
 * only; `unavailable` on the web). */
interface WasiHostFolders {
  grants?: Array<DirectoryGrant | WasiGrantMount>;
  preopens?: Array<string | {guest: string; mode?: 'ro' | 'rw'}>;
}

interface WasiPageSpawnOptions extends WasiHostFolders {
  args?: string[];
  env?: Record<string, string>;
  vfs?: WasiVfs;
  /** Pipe the instance's stdout / stderr bytes into these. */
  stdout?: WritableStream<Uint8Array>;
  stderr?: WritableStream<Uint8Array>;
}

interface WasiPageRunOptions extends WasiHostFolders {
  args?: string[];
  env?: Record<string, string>;
  vfs?: WasiVfs;
  stdin?: WasiData;
}

/** A page-supplied module compiled once (`WasiWorker.register`), run in the browser engine. */
declare class WasiService {
  private constructor();
  readonly name: string;
  readonly ipc: 'lines' | 'frames' | 'stream';
  readonly module: WebAssembly.Module;
  spawn(options?: WasiPageSpawnOptions): WasiWorker;
  run(options?: WasiPageRunOptions): Promise<WasiRunResult>;
  /** How many page-supplied modules this page has compiled. */
  static readonly compiles: number;
}

declare class WasiWorker extends EventTarget {
  /** Throws WasiError (`lookup`) for an unknown service, TypeError for bad options. */
  constructor(service: string, options?: WasiSpawnOptions);
  constructor(module: WasiModuleSource, options?: WasiPageSpawnOptions & WasiModuleOptions);
  constructor(module: WasiService, options?: WasiPageSpawnOptions);

  readonly name: string;
  readonly ipc: WasiServiceInfo['ipc'];

  /**
   * One message: a string without newlines for `lines`; an ArrayBuffer or a view for `frames`
   * and `stream`. Anything else throws a TypeError saying what the mode takes.
   */
  postMessage(data: string | ArrayBuffer | ArrayBufferView): void;

  /** Stop the instance at once; no more `message`/`error` events, then `exit`. */
  terminate(): void;

  /** Raw stdin; `close()` it for end of input. Not for `background` services. */
  readonly stdin: WritableStream<Uint8Array | ArrayBuffer | string>;
  /** Raw stdout from the first time this is read; an unread full stream pauses the service. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** Raw stderr from the first time this is read (lines also go to console.warn). */
  readonly stderr: ReadableStream<Uint8Array>;

  onmessage: ((this: WasiWorker, ev: MessageEvent<string | ArrayBuffer>) => unknown) | null;
  onerror: ((this: WasiWorker, ev: ErrorEvent) => unknown) | null;
  onexit: ((this: WasiWorker, ev: WasiExitEvent) => unknown) | null;

  addEventListener<K extends keyof WasiWorkerEventMap>(
    type: K,
    listener: (this: WasiWorker, ev: WasiWorkerEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof WasiWorkerEventMap>(
    type: K,
    listener: (this: WasiWorker, ev: WasiWorkerEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;

  /**
   * Run a service to completion with `stdin` (then EOF). Resolves whatever the exit code;
   * rejects with a WasiError on a trap, timeout, memory limit or refused start.
   */
  static run(service: string, options?: WasiRunOptions): Promise<WasiRunResult>;
  static run(module: WasiModuleSource, options?: WasiPageRunOptions & WasiModuleOptions): Promise<WasiRunResult>;
  static run(module: WasiService, options?: WasiPageRunOptions): Promise<WasiRunResult>;

  /** Fetch and compile a page-supplied module once; spawn or run it many times. */
  static register(module: WasiModuleSource, options?: WasiModuleOptions): Promise<WasiService>;

  /** Ask the user for a folder with the app window's native dialog. On the web: the browser's
   *  `showDirectoryPicker` (`unavailable` without it); a service then works on a copy of the
   *  folder, written back at its exit (docs/web.md). */
  static requestDirectory(options?: { mode?: 'ro' | 'rw' }): Promise<DirectoryGrant>;

  /** This app's services by name. */
  static readonly services: Record<string, WasiServiceInfo>;
}

// -- the `wvwasi` global: the app beside its services (docs/page-api.md, "The wvwasi global") --

/** A document a launch named: its path, and a grant with the mode its association gives it
 *  (read-write only for an `editor` association; null if it could not be granted). */
interface WvwasiOpenedFile {
  path: string;
  name: string;
  mode: 'ro' | 'rw';
  grant: FileGrant | null;
}

/** `open`: the app was launched (or, single-instance, launched again) with these. */
interface WvwasiOpenDetail {
  files: WvwasiOpenedFile[];
  /** Arguments whose scheme is one of `[app] url_schemes`. */
  urls: string[];
  /** Everything else on the command line. */
  args: string[];
  /** The launch's working folder. */
  cwd: string;
}

/** `menu`: a `[[window.menu]]` item with this `id` was clicked. */
interface WvwasiMenuDetail {
  id: string;
}

/** `tray`: the `[app] tray_menu` item with this `id` was clicked, or (null) the tray icon. */
interface WvwasiTrayDetail {
  id: string | null;
}

interface WvwasiAppEventMap {
  open: CustomEvent<WvwasiOpenDetail>;
  menu: CustomEvent<WvwasiMenuDetail>;
  tray: CustomEvent<WvwasiTrayDetail>;
}

/** `wvwasi.app`: events from the app window. `open` events wait until the first `open`
 *  listener is added (the first launch's documents are not lost to a slow page). */
interface WvwasiApp extends EventTarget {
  addEventListener<K extends keyof WvwasiAppEventMap>(
    type: K,
    listener: (this: WvwasiApp, ev: WvwasiAppEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

interface Wvwasi {
  readonly app: WvwasiApp;
}

declare var wvwasi: Wvwasi;

/** `wvwasi.window`: the window the page is shown in. Each call rejects with kind `invalid` for
 *  a bad argument and `unavailable` without an app window; on the web `setTitle` sets
 *  `document.title`, `setFullscreen` uses the Fullscreen API, `open` is `window.open` and
 *  `close` is `window.close` (only of a window a script opened), and `resize` rejects with
 *  `unavailable`. */
interface WvwasiWindow {
  /** At most 1024 characters. */
  setTitle(title: string): Promise<void>;
  /** Width and height in pixels, each 1 to 16384. */
  resize(width: number, height: number): Promise<void>;
  setFullscreen(on: boolean): Promise<void>;
  /** Close the window: the main window shuts the app down as if the user had closed it; a
   *  second window closes alone. */
  close(): Promise<void>;
  /** Open a second window on `page`, an HTML page of the app's UI folder ('settings.html'),
   *  with a bridge session of its own. Rejects with kind `permission` for anything else (a URL,
   *  `..`, a missing or non-HTML file), `limit` past 8 open second windows, `invalid` for a
   *  bad option; on the web also `unavailable` if the browser blocked the popup. */
  open(page: string, options?: WvwasiWindowOptions): Promise<void>;
  /** Replace the menu bar (the JSON form of `[[window.menu]]`, same rules); clicks arrive as
   *  `menu` events. Linux only so far: elsewhere, and on the web, rejects with `unavailable`. */
  setMenu(menu: WvwasiMenu[]): Promise<void>;
}

interface WvwasiWindowOptions {
  /** At most 1024 characters; default `[window] title`. */
  title?: string;
  /** Pixels, 1 to 16384 each; default `[window] width`/`height`. */
  width?: number;
  height?: number;
}

/** A menu entry: a submenu (`items`), an action (`id`, reported by `menu` events) or a
 *  separator. */
type WvwasiMenuEntry =
  | {label: string; id: string}
  | {label: string; items: WvwasiMenuEntry[]}
  | {separator: true};

/** A top-level menu of the menu bar. */
interface WvwasiMenu {
  label: string;
  items: WvwasiMenuEntry[];
}

interface WvwasiNotification {
  /** At most 256 characters. */
  title: string;
  /** At most 4096 characters; default "". */
  body?: string;
}

interface Wvwasi {
  readonly window: WvwasiWindow;
  /** Show a desktop notification (needs `[app] notifications = true`). Rejects with a
   *  WasiError of kind `permission` (not granted), `invalid` (too long), `limit` (more than 10
   *  in 10 s) or `unavailable` (no notification server, or an OS without support yet); on the
   *  web it uses the browser's Notification API (`permission` if the user says no). */
  notify(notification: WvwasiNotification): Promise<void>;
}

/** A file the user picked (`wvwasi.dialog`) or the app was launched with: valid only in the
 *  page session that got it. On the web it holds the browser's file (handle) in the page. */
declare class FileGrant {
  private constructor();
  /** The file's own name (not its path). */
  readonly name: string;
  readonly mode: 'ro' | 'rw';
  /** The file's bytes (at most 63 MiB). */
  read(): Promise<Uint8Array>;
  /** The file's text (UTF-8). */
  text(): Promise<string>;
  /** Replace the file's content whole (rw grants only; at most 63 MiB). */
  write(data: string | Blob | ArrayBuffer | ArrayBufferView): Promise<void>;
}

/** `wvwasi.dialog`: the app window's file dialogs; on the web the browser's pickers (File System
 *  Access, `<input type=file>` for `openFile` without it). Reject with kind `cancelled` when the
 *  user closes the dialog, `unavailable` without one (`wvwasi serve`; on the web `saveFile` and
 *  `openFile({mode: 'rw'})` without File System Access). */
interface WvwasiDialog {
  /** One file (an array with `multiple`); `accept`: extensions like ['.note']. */
  openFile(options?: { accept?: string[]; mode?: 'ro' | 'rw'; multiple?: false }): Promise<FileGrant>;
  openFile(options: { accept?: string[]; mode?: 'ro' | 'rw'; multiple: true }): Promise<FileGrant[]>;
  /** Where to save: a read-write grant (the file need not exist yet). */
  saveFile(options?: { suggestedName?: string; accept?: string[] }): Promise<FileGrant>;
}

interface Wvwasi {
  readonly dialog: WvwasiDialog;
}

// -- wvwasi.updater, wvwasi.app.relaunch (docs/update.md) -------------------------------------

/** A newer signed release of the app (from its `[update]` endpoints' latest.json). */
interface WvwasiRelease {
  version: string;
  notes: string;
  /** latest.json's `pub_date` (RFC 3339), "" when it has none. */
  date: string;
}

interface WvwasiUpdateProgress {
  /** Bytes downloaded so far. */
  downloaded: number;
  /** The download's size, null when the server does not say. */
  total: number | null;
}

interface WvwasiUpdater {
  /** The newer release, or null when this version is the newest. Rejects with a WasiError
   * (kind "update") when no endpoint answers or the answer is malformed or a downgrade. */
  check(): Promise<WvwasiRelease | null>;
  /** Download, verify (the signature, before anything is unpacked) and install the newer
   * release; resolves to its version, or null when this one is already the newest. Rejects
   * with a WasiError (kind "update"), the installed app unchanged. */
  install(onProgress?: (progress: WvwasiUpdateProgress) => void): Promise<string | null>;
}

interface WvwasiApp {
  /** Start the app again (the version now installed) and close this one. */
  relaunch(): Promise<void>;
}

interface Wvwasi {
  readonly updater: WvwasiUpdater;
}
