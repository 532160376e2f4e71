// Helpers for tests/test_page_api.py, which calls them through Playwright's page.evaluate.
'use strict';

window.harness = {
  /** Resolves once `predicate()` is true (Playwright's wait_for_function needs eval, which the
   * bridge's CSP forbids). */
  until(predicate) {
    return new Promise((resolve) => {
      const check = () => (predicate() ? resolve() : setTimeout(check, 10));
      check();
    });
  },

  /** The next event of `type` on `target`. */
  next(target, type) {
    return new Promise((resolve) => target.addEventListener(type, resolve, {once: true}));
  },

  /** The data of the first `count` messages; rejects if the worker ends first. */
  collect(worker, count) {
    return new Promise((resolve, reject) => {
      const got = [];
      if (count === 0) resolve(got);
      worker.addEventListener('message', (e) => {
        got.push(e.data);
        if (got.length === count) resolve(got);
      });
      worker.addEventListener('exit', (e) => {
        reject(new Error(`exited (${e.code}) after ${got.length} messages: ${e.error?.message}`));
      });
    });
  },

  /** Resolves when a message equal to `data` arrives; rejects if the worker ends first. */
  waitFor(worker, data) {
    return new Promise((resolve, reject) => {
      const listener = (e) => {
        if (e.data !== data) return;
        worker.removeEventListener('message', listener);
        resolve(e.data);
      };
      worker.addEventListener('message', listener);
      worker.addEventListener('exit', () => reject(new Error(`exited before '${data}'`)));
    });
  },

  /** For a background `lines` echo service: posts `${tag} N` every 100 ms until one comes back
   * to `worker`, which proves its subscription is up (the shared instance starts with the app). */
  async connected(worker, tag) {
    let seen = false;
    worker.addEventListener('message', (e) => { seen ||= e.data.startsWith(tag); });
    for (let i = 0; i < 100 && !seen; i++) {
      worker.postMessage(`${tag} ${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return seen;
  },

  /** Everything a worker reports until it ends: {code, errors, kind, messages}. */
  ended(worker) {
    const messages = [];
    const errors = [];
    worker.addEventListener('message', (e) => messages.push(e.data));
    worker.addEventListener('error', (e) => errors.push({message: e.message, kind: e.error?.kind}));
    return new Promise((resolve) => worker.addEventListener('exit', (e) => {
      resolve({code: e.code, kind: e.error?.kind ?? null, errors, messages});
    }, {once: true}));
  },

  /** {ok: value} or the error's {name, kind, message}. */
  async outcome(promise) {
    try {
      return {ok: await promise};
    } catch (e) {
      return {name: e.name, kind: e.kind ?? null, message: e.message};
    }
  },

  /** What `fn()` throws, as {name, kind, message}, or null. */
  thrown(fn) {
    try {
      fn();
      return null;
    } catch (e) {
      return {name: e.name, kind: e.kind ?? null, message: e.message};
    }
  },

  /** Every byte of a ReadableStream of Uint8Array. */
  async readAll(stream) {
    const chunks = [];
    let size = 0;
    for (const reader = stream.getReader(); ;) {
      const {value, done} = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
    const out = new Uint8Array(size);
    let pos = 0;
    for (const c of chunks) {
      out.set(c, pos);
      pos += c.byteLength;
    }
    return out;
  },

  text(bytes) {
    return new TextDecoder().decode(bytes);
  },
};
