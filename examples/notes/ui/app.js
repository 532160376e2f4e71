// Notes: the page side. Four WASI services do the work (see ../wvwasi.toml):
//   store  (background, lines)  the notes on disk, JSON requests/replies
//   stats  (task)               statistics of the open note, one run per edit
//   filter (dedicated, frames)  image filters on the canvas's RGBA pixels
//   export (task, user_grants)  copies the notes into a folder the user picks

const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();

// -- log panel: every service's stderr -------------------------------------------------------

let logCount = 0;

function log(service, text, isError = false) {
  const line = document.createElement('div');
  const name = document.createElement('span');
  name.className = 'service';
  name.textContent = `[${service}] `;
  line.append(name, text);
  if (isError) line.className = 'error';
  $('log').append(line);
  $('log').scrollTop = $('log').scrollHeight;
  logCount += 1;
  $('log-count').textContent = String(logCount);
  $('log-count').hidden = false;
}

/** Forwards a worker's stderr stream to the log panel, line by line. */
async function pipeStderr(service, stream) {
  const reader = stream.getReader();
  let pending = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    pending += decoder.decode(value, {stream: true});
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) log(service, line);
  }
  if (pending) log(service, pending);
}

function logRun(service, result) {
  for (const line of result.stderr.split('\n')) if (line) log(service, line);
}

// -- error banner ---------------------------------------------------------------------------------

function showError(message) {
  $('banner-text').textContent = message;
  $('banner').hidden = false;
}

$('banner-close').onclick = () => { $('banner').hidden = true; };

// -- the notes store (background service) --------------------------------------------------------

class Store {
  constructor() {
    this.pending = new Map();
    this.rid = Math.floor(Math.random() * 1e9); // replies go to every page: keep ours apart
    this.onchange = () => {};
    this.connect();
  }

  connect() {
    this.worker = new WasiWorker('store');
    this.worker.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.worker.onerror = (event) => showError(`Notes store: ${event.message}`);
    this.worker.onexit = (event) => {
      const error = new Error(event.error?.message ?? `the store exited with code ${event.code}`);
      for (const {reject} of this.pending.values()) reject(error);
      this.pending.clear();
      setTimeout(() => this.connect(), 500); // `wvwasi dev` restarted it, or it crashed
    };
    pipeStderr('store', this.worker.stderr);
  }

  request(op, fields = {}) {
    const rid = ++this.rid;
    return new Promise((resolve, reject) => {
      this.pending.set(rid, {resolve, reject});
      this.worker.postMessage(JSON.stringify({rid, op, ...fields}));
    });
  }

  receive(reply) {
    const waiter = this.pending.get(reply.rid);
    if (waiter) {
      this.pending.delete(reply.rid);
      if (reply.op === 'error') waiter.reject(new Error(reply.error));
      else waiter.resolve(reply);
    }
    if (reply.op === 'saved' || reply.op === 'deleted') this.onchange(reply);
  }
}

// -- notes list and editor ------------------------------------------------------------------------

const state = {notes: [], current: null, saved: '', filter: ''};
let store;

function newId() {
  return `n${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
}

function titleOf(text) {
  const line = text.split('\n').map((l) => l.replace(/^#+\s*/, '').trim()).find(Boolean);
  return line ? line.slice(0, 80) : 'Untitled';
}

function when(ms) {
  if (!ms) return '';
  const date = new Date(ms);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})
    : date.toLocaleDateString();
}

function renderList() {
  const list = $('note-list');
  list.replaceChildren();
  const shown = state.notes
    .filter((n) => n.title.toLowerCase().includes(state.filter))
    .sort((a, b) => b.modified - a.modified);
  for (const note of shown) {
    const item = document.createElement('li');
    item.dataset.id = note.id;
    item.classList.toggle('active', note.id === state.current);
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = note.title || 'Untitled';
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `${when(note.modified)} · ${note.size} bytes`;
    item.append(title, meta);
    item.onclick = () => openNote(note.id);
    list.append(item);
  }
  if (!shown.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = state.notes.length ? 'No match' : 'No notes yet';
    list.append(empty);
  }
}

function setDirty() {
  const dirty = $('text').value !== state.saved;
  $('save-state').textContent = dirty ? 'Edited' : state.current ? 'Saved' : '';
  $('note-title').textContent = titleOf($('text').value);
}

async function refresh() {
  const reply = await store.request('list');
  state.notes = reply.notes;
  renderList();
}

async function openNote(id) {
  if (!(await confirmDiscard())) return;
  const reply = await store.request('load', {id});
  state.current = id;
  documentGrant = null;
  state.saved = reply.text;
  $('text').value = reply.text;
  setDirty();
  renderList();
  updateStats();
}

async function confirmDiscard() {
  if ($('text').value === state.saved) return true;
  await save();
  return true;
}

async function save() {
  const text = $('text').value;
  if (state.current ? text === state.saved : !text.trim()) return; // nothing to save
  state.current ??= newId();
  try {
    await store.request('save', {id: state.current, text});
    state.saved = text;
    setDirty();
  } catch (error) {
    showError(`Could not save: ${error.message}`);
  }
}

async function remove() {
  if (!state.current) return;
  const id = state.current;
  await store.request('delete', {id});
  state.current = null;
  state.saved = '';
  $('text').value = '';
  setDirty();
  updateStats();
}

function newNote() {
  confirmDiscard().then(() => {
    documentGrant = null;
    state.current = null;
    state.saved = '';
    $('text').value = '';
    setDirty();
    renderList();
    updateStats();
    $('text').focus();
  });
}

// -- statistics (task service) --------------------------------------------------------------------

let statsTimer = 0;
let statsSeq = 0;

function updateStats() {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(runStats, 200);
}

async function runStats() {
  const seq = ++statsSeq;
  try {
    const result = await WasiWorker.run('stats', {stdin: $('text').value});
    if (seq !== statsSeq) return; // a newer edit is on its way
    const s = JSON.parse(result.stdout);
    $('st-words').textContent = s.words.toLocaleString();
    $('st-chars').textContent = s.chars.toLocaleString();
    $('st-lines').textContent = s.lines.toLocaleString();
    $('st-sentences').textContent = s.sentences.toLocaleString();
    $('st-paragraphs').textContent = s.paragraphs.toLocaleString();
    const secs = s.reading_seconds;
    $('st-reading').textContent = secs < 60 ? `${secs} s` : `${Math.round(secs / 60)} min`;
    const top = $('st-top');
    top.replaceChildren(...s.top.map(([word, count]) => {
      const item = document.createElement('li');
      const n = document.createElement('span');
      n.className = 'count';
      n.textContent = count;
      item.append(word, n);
      return item;
    }));
  } catch (error) {
    showError(`Statistics failed: ${error.message}`);
  }
}

// -- image filters (dedicated service, frames) ----------------------------------------------------

const canvas = $('canvas');
const ctx = canvas.getContext('2d', {willReadFrequently: true});
let filter = null;
let filterBusy = null; // {resolve, reject} of the request in flight
let original = null; // pixels before filtering, for Reset

function drawDefault() {
  const g = ctx.createLinearGradient(0, 0, canvas.width, canvas.height);
  g.addColorStop(0, '#ffb347');
  g.addColorStop(0.5, '#ff5e62');
  g.addColorStop(1, '#3563e9');
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#ffffff';
  ctx.beginPath();
  ctx.arc(96, 120, 54, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = '#1d2330';
  ctx.font = 'bold 34px sans-serif';
  ctx.fillText('wvwasi', 160, 132);
  original = ctx.getImageData(0, 0, canvas.width, canvas.height);
}

function filterWorker() {
  if (filter) return filter;
  const worker = new WasiWorker('filter');
  worker.onmessage = (event) => {
    const waiter = filterBusy;
    filterBusy = null;
    waiter?.resolve(new Uint8Array(event.data));
  };
  worker.onerror = (event) => showError(`The filter service failed: ${event.message}`);
  worker.onexit = (event) => {
    if (filter === worker) filter = null; // the next request starts a fresh instance
    const waiter = filterBusy;
    filterBusy = null;
    waiter?.reject(event.error ?? new Error(`filter exited with code ${event.code}`));
  };
  pipeStderr('filter', worker.stderr);
  filter = worker;
  return worker;
}

function filterRequest(op, amount = 0) {
  const {width, height} = canvas;
  const pixels = ctx.getImageData(0, 0, width, height).data;
  const frame = new Uint8Array(12 + pixels.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, op);
  view.setUint8(1, amount);
  view.setUint32(4, width, true);
  view.setUint32(8, height, true);
  frame.set(pixels, 12);
  const worker = filterWorker();
  return new Promise((resolve, reject) => {
    filterBusy = {resolve, reject};
    worker.postMessage(frame);
  });
}

async function applyFilter(op) {
  if (filterBusy) return;
  const started = performance.now();
  try {
    const reply = await filterRequest(op, 3);
    if (reply.length === 0) throw new Error('the filter refused the image');
    const {width, height} = canvas;
    ctx.putImageData(new ImageData(new Uint8ClampedArray(reply.buffer, 12, width * height * 4), width, height), 0, 0);
    $('image-state').textContent = `Filtered in ${Math.round(performance.now() - started)} ms.`;
  } catch (error) {
    $('image-state').textContent = `Failed: ${error.message}`;
  }
}

async function crashTest() {
  const worker = filterWorker();
  filterBusy = {resolve: () => {}, reject: () => {}};
  worker.postMessage(new Uint8Array([255]));
}

function loadImage(file) {
  const img = new Image();
  img.onload = () => {
    const scale = Math.min(canvas.width / img.width, canvas.height / img.height);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const w = img.width * scale;
    const h = img.height * scale;
    ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    original = ctx.getImageData(0, 0, canvas.width, canvas.height);
    URL.revokeObjectURL(img.src);
  };
  img.src = URL.createObjectURL(file);
}

function enableDrawing() {
  let last = null;
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.onpointerdown = (e) => { last = point(e); canvas.setPointerCapture(e.pointerId); };
  canvas.onpointermove = (e) => {
    if (!last) return;
    const next = point(e);
    ctx.strokeStyle = '#1d2330';
    ctx.lineWidth = 4;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...next);
    ctx.stroke();
    last = next;
  };
  canvas.onpointerup = () => { last = null; };
}

// -- export to a folder the user picks (task service with user_grants) ----------------------------

async function exportNotes() {
  await save();
  let grant;
  try {
    grant = await WasiWorker.requestDirectory({mode: 'rw'});
  } catch (error) {
    if (error.kind !== 'cancelled') showError(`Export failed: ${error.message}`);
    return;
  }
  try {
    const result = await WasiWorker.run('export', {grants: [{grant, guest: '/export', mode: 'rw'}]});
    logRun('export', result);
    const {exported, failed} = JSON.parse(result.stdout);
    $('export-result').textContent =
      `${exported} note${exported === 1 ? '' : 's'} exported to “${grant.name}”` +
      (failed ? `, ${failed} failed` : '');
  } catch (error) {
    showError(`Export failed: ${error.message}`);
  }
}

// -- self-test hook: `app --self-test` awaits this after its generic checks -----------------------

globalThis.wvwasiSelfTest = async () => {
  const stats = JSON.parse((await WasiWorker.run('stats', {stdin: 'One two three. Four!'})).stdout);
  const list = await store.request('list');
  const {width, height} = canvas;
  const reply = await filterRequest(2);
  const first = ctx.getImageData(0, 0, 1, 1).data;
  return {
    stats: {ok: stats.words === 4 && stats.sentences === 2, detail: `${stats.words} words`},
    store: {ok: Array.isArray(list.notes), detail: `${list.notes.length} notes`},
    filter: {
      ok: reply.length === 12 + width * height * 4 && reply[12] === 255 - first[0],
      detail: `inverted ${width}x${height}`,
    },
  };
};

// -- .note files: opened with the app (double-click), File > Open, File > Save as --------------------

// The opened file's grant while the editor shows it (read-write: Save writes it back too).
let documentGrant = null;

async function openDocument(grant) {
  if (!grant) return;
  await confirmDiscard();
  const text = await grant.text();
  state.current = null;
  state.saved = '';
  $('text').value = text;
  await save(); // kept as a note as well
  documentGrant = grant.mode === 'rw' ? grant : null;
  setDirty();
  renderList();
  updateStats();
}

function reportFileError(error) {
  if (error.kind !== 'cancelled') showError(`File: ${error.message}`);
}

async function openFile() {
  try {
    await openDocument(await wvwasi.dialog.openFile({accept: ['.note'], mode: 'rw'}));
  } catch (error) {
    reportFileError(error);
  }
}

async function saveAs() {
  const text = $('text').value;
  try {
    const grant = await wvwasi.dialog.saveFile({suggestedName: `${titleOf(text)}.note`,
                                                accept: ['.note']});
    await grant.write(text);
    documentGrant = grant;
    await save();
  } catch (error) {
    reportFileError(error);
  }
}

async function saveAll() {
  await save();
  if (documentGrant) await documentGrant.write($('text').value).catch(reportFileError);
}

// -- wiring ---------------------------------------------------------------------------------------

// [[window.menu]] ids (wvwasi.toml) -> what they do.
const commands = {new: newNote, open: openFile, save: saveAll, 'save-as': saveAs,
                  export: exportNotes};

function selectTab(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.setAttribute('aria-selected', String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll('[role="tabpanel"]')) {
    panel.hidden = panel.id !== `tab-${name}`;
  }
}

function start() {
  store = new Store();
  store.onchange = () => refresh().catch((e) => showError(e.message));
  refresh().catch((error) => showError(`Cannot list notes: ${error.message}`));

  $('text').oninput = () => { setDirty(); updateStats(); };
  $('save').onclick = saveAll;
  $('delete').onclick = remove;
  $('new-note').onclick = newNote;
  $('export').onclick = exportNotes;
  $('search').oninput = (e) => { state.filter = e.target.value.toLowerCase(); renderList(); };
  document.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey)) return;
    if (e.key === 's') { e.preventDefault(); saveAll(); }
    if (e.key === 'n') { e.preventDefault(); newNote(); }
  });
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.onclick = () => selectTab(tab.dataset.tab);
  }
  $('log-clear').onclick = () => {
    $('log').replaceChildren();
    logCount = 0;
    $('log-count').hidden = true;
  };

  drawDefault();
  enableDrawing();
  for (const button of document.querySelectorAll('[data-op]')) {
    button.onclick = () => applyFilter(Number(button.dataset.op));
  }
  $('image-reset').onclick = () => { if (original) ctx.putImageData(original, 0, 0); };
  $('image-file').onchange = (e) => { if (e.target.files[0]) loadImage(e.target.files[0]); };
  $('crash').onclick = crashTest;

  wvwasi.app.addEventListener('menu', (e) => commands[e.detail.id]?.());
  wvwasi.app.addEventListener('open', async (e) => {
    for (const file of e.detail.files) await openDocument(file.grant).catch(reportFileError);
  });

  setDirty();
  updateStats();
}

start();
