// Runs the service `{{service}}` (services/{{wasm}}) as a task with what the form holds.
const SERVICE = '{{service}}';
const $ = (id) => document.getElementById(id);

/** Split a command line as a shell does: 'single' and "double" quotes group words. */
export function splitArgs(text) {
  const words = [];
  for (const m of text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

function show(result, error) {
  $('status').textContent = error
    ? `failed (${error.kind}): ${error.message}`
    : `exit code ${result.exitCode}`;
  $('stdout').textContent = result?.stdout ?? '';
  $('stderr').textContent = result?.stderr ?? '';
  $('written').replaceChildren(...Object.entries(result?.outputs ?? {}).map(([path, bytes]) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([bytes]));
    link.download = path.slice(path.lastIndexOf('/') + 1);
    link.textContent = `${path} (${bytes.length} bytes)`;
    item.append(link);
    return item;
  }));
}

$('run').addEventListener('click', async () => {
  const files = {};
  for (const file of $('files').files) files[`/in/${file.name}`] = file;
  $('status').textContent = 'running…';
  try {
    show(await WasiWorker.run(SERVICE, {
      args: splitArgs($('args').value), stdin: $('stdin').value, files,
      outputs: splitArgs($('outputs').value),
    }));
  } catch (error) {
    show(error, error); // a rejected run carries what the task printed
  }
});
