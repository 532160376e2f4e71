// The page: one `count` worker (a Rust service from wvwasi.toml) lives as long as the page;
// every line posted to it comes back as one line of JSON, in order.
const $ = (id) => document.getElementById(id);
const counter = new WasiWorker('count');
const pending = [];

counter.onmessage = (event) => pending.shift()?.(JSON.parse(event.data));
counter.onerror = (event) => { $('out').textContent = `error: ${event.error.message}`; };

function count(text) {
  return new Promise((resolve) => {
    pending.push(resolve);
    counter.postMessage(text);
  });
}

$('text').addEventListener('input', async () => {
  const {words, chars} = await count($('text').value);
  $('out').textContent = `${words} words, ${chars} characters`;
});

// `--self-test` calls this: real round trips through the service.
globalThis.wvwasiSelfTest = async () => {
  const first = await count('hello wasm world');
  const second = await count('naïve café');
  const ok = first.words === 3 && second.chars === 10 && second.total === 5;
  return {count: {ok, detail: JSON.stringify([first, second])}};
};
