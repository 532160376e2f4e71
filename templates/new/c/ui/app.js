// The page: `WasiWorker` (provided by wvwasi) runs the `greet` service from wvwasi.toml.
const $ = (id) => document.getElementById(id);

async function greet(name) {
  const result = await WasiWorker.run('greet', {stdin: name});
  if (result.exitCode !== 0) throw new Error(result.stderr.trim());
  return result.stdout.trim();
}

$('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    $('out').textContent = await greet($('name').value);
  } catch (error) {
    $('out').textContent = `error: ${error.message}`;
  }
});

// `--self-test` calls this: a real round trip through the service.
globalThis.wvwasiSelfTest = async () => {
  const text = await greet('wvwasi');
  return {greet: {ok: text === 'Hello, wvwasi!', detail: text}};
};
