// Runs as a module: proves .mjs is served as JavaScript and that wvwasi.js ran before it.
import {describe} from './lib/describe.mjs';

document.getElementById('status').textContent = describe(globalThis.WasiWorker);
