/*
 * wvwasi's wire formats in the browser, written once (docs/architecture.md, "Bridge protocol"):
 *
 * - Bridge records: a 9-byte header (u32 LE payload length, u8 op, u32 LE worker id), then the
 *   payload; a WebSocket frame holds one or more (runtime/bridge/protocol.py `HEADER`).
 * - JSON payloads: u32 LE length of the JSON, the JSON (UTF-8), then raw bytes (the SPAWN/RUN
 *   records, RESULT/EXIT/ERROR replies, host-folder calls and answers).
 * - Message framing of the `ipc` modes (runtime/host/framing.py): `lines` (newline-terminated),
 *   `frames` (u32 LE length + bytes), `stream` (each chunk is one message), with `limits.message`
 *   bounding a line or a frame as the native host does.
 *
 * An ES module for the engine (wasi-web.js, wasi-hostfs.js import it). wvwasi.js is a classic
 * script: the bridge and the web build join this file in front of it (runtime/bridge/static.py
 * `page_script`), wrapped in a function whose result wvwasi.js takes from
 * `globalThis.__wvwasiWire`. So: no imports here, and every export a top-level declaration.
 */

const encoder = new TextEncoder();
// A leading U+FEFF is part of the message, not a byte order mark to drop.
const decoder = new TextDecoder('utf-8', {ignoreBOM: true});

/** Bytes of a bridge record's header: u32 LE payload length, u8 op, u32 LE id. */
export const HEADER = 9;

/** Writes `records` ([op, id, payload] each) into `frame` from its start, each payload after
 * its header; a payload already in place (a lone record made in a buffer of its own with
 * HEADER bytes free in front) is not copied. Returns `frame`. */
export function writeRecords(frame, records) {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let pos = 0;
  for (const [op, id, payload] of records) {
    view.setUint32(pos, payload.byteLength, true);
    view.setUint8(pos + 4, op);
    view.setUint32(pos + 5, id, true);
    if (payload.buffer !== frame.buffer) frame.set(payload, pos + HEADER);
    pos += HEADER + payload.byteLength;
  }
  return frame;
}

/** Calls `each(op, id, start, length)` for the records of frame `bytes` in order (`start`: the
 * payload's offset in `bytes.buffer`); stops early when `each` returns false. */
export function readRecords(bytes, each) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 0; pos + HEADER <= bytes.byteLength;) {
    const length = view.getUint32(pos, true);
    const start = pos + HEADER;
    if (each(view.getUint8(pos + 4), view.getUint32(pos + 5, true), bytes.byteOffset + start,
      length) === false) return;
    pos = start + length;
  }
}

/** `u32 LE JSON length + JSON + blobs` as one Uint8Array. */
export function jsonPayload(obj, blobs = []) {
  const head = encoder.encode(JSON.stringify(obj));
  let size = 4 + head.byteLength;
  for (const b of blobs) size += b.byteLength;
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, head.byteLength, true);
  out.set(head, 4);
  let at = 4 + head.byteLength;
  for (const b of blobs) {
    out.set(b, at);
    at += b.byteLength;
  }
  return out;
}

/** [the parsed JSON, the bytes after it (a view)] of a `jsonPayload`. */
export function readJson(bytes) {
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  const json = JSON.parse(decoder.decode(bytes.subarray(4, 4 + length)));
  return [json, bytes.subarray(4 + length)];
}

/** The stdin bytes that deliver message `bytes` to a service in mode `ipc` (a new array). */
export function encodeMessage(ipc, bytes) {
  if (ipc === 'lines') {
    const out = new Uint8Array(bytes.length + 1);
    out.set(bytes);
    out[bytes.length] = 10;
    return out;
  }
  if (ipc === 'frames') {
    const out = new Uint8Array(4 + bytes.length);
    new DataView(out.buffer).setUint32(0, bytes.length, true);
    out.set(bytes, 4);
    return out;
  }
  return bytes.slice();
}

/** A line or frame over `limits.message`: the native host ends the instance ("output" error)
 * with this message, after "service 'NAME' ". */
export class MessageTooLong extends Error {}

/** Splits a service's stdout into messages: `feed(chunk)` returns those it completes, `finish()`
 * the last unterminated line at exit. At most `maxMessage` bytes of one line are buffered, and a
 * frame header announcing more throws MessageTooLong (runtime/host/framing.py `Decoder`). */
export class MessageDecoder {
  constructor(ipc, maxMessage = Infinity) {
    this.ipc = ipc;
    this.max = maxMessage;
    this.buffer = new Uint8Array(0);
  }

  feed(chunk) {
    if (this.ipc === 'stream') return chunk.length ? [chunk] : [];
    const data = this.buffer.length ? concat([this.buffer, chunk]) : chunk;
    const out = [];
    let pos = 0;
    if (this.ipc === 'lines') {
      for (let nl; (nl = data.indexOf(10, pos)) >= 0; pos = nl + 1) {
        if (nl - pos > this.max) this.#longLine();
        out.push(data.slice(pos, nl));
      }
      if (data.length - pos > this.max) this.#longLine();
    } else {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      while (pos + 4 <= data.length) {
        const length = view.getUint32(pos, true);
        if (length > this.max) {
          throw new MessageTooLong(`announced a frame of ${length} bytes, over its ` +
            `limits.message of ${this.max} bytes`);
        }
        if (pos + 4 + length > data.length) break;
        out.push(data.slice(pos + 4, pos + 4 + length));
        pos += 4 + length;
      }
    }
    this.buffer = data.slice(pos);
    return out;
  }

  #longLine() {
    throw new MessageTooLong(`wrote a line of more than ${this.max} bytes (its limits.message) ` +
      'without a newline');
  }

  finish() {
    const rest = this.buffer;
    this.buffer = new Uint8Array(0);
    return this.ipc === 'lines' && rest.length ? [rest] : [];
  }
}

/** The chunks one after another in a new Uint8Array. */
export function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
