// The page: each Solve starts the `boolector` service (a third-party WASI program) on one
// problem file and shows its stdout as it streams in. A problem typed here reaches the program
// as a read-only file (`files`); the examples are shipped with the app and preopened at
// /examples from $RESOURCES (see wvwasi.toml).
const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();

/** Run Boolector on `path` (`text`, if given, becomes that file); `onOutput` gets each chunk. */
function solve({path, text}, onOutput) {
  const files = text === undefined ? {} : {[path]: text};
  const solver = new WasiWorker('boolector', {args: [path], files});
  return new Promise((resolve, reject) => {
    solver.onmessage = (event) => onOutput(decoder.decode(event.data, {stream: true}));
    solver.onerror = (event) => reject(event.error);
    // Boolector exits with 10 when the last check was sat, 20 when unsat.
    solver.onexit = (event) => resolve(event.code);
  });
}

$('solve').addEventListener('click', async () => {
  const example = $('example').value;
  const problem = example ? {path: example} : {path: '/input/problem.smt2', text: $('problem').value};
  $('out').textContent = '';
  try {
    const code = await solve(problem, (chunk) => { $('out').textContent += chunk; });
    $('out').textContent += `\n(exit status ${code})`;
  } catch (error) {
    $('out').textContent += `\nerror: ${error.message}`;
  }
});

// `--self-test` calls this: the shipped example through the preopen, then a sent file.
globalThis.wvwasiSelfTest = async () => {
  let shipped = '';
  const code = await solve({path: '/examples/bits.smt2'}, (chunk) => { shipped += chunk; });
  let sent = '';
  const text = '(declare-const p Bool)\n(assert (and p (not p)))\n(check-sat)\n';
  await solve({path: '/input/problem.smt2', text}, (chunk) => { sent += chunk; });
  return {
    resources: {ok: code === 20 && shipped === 'sat\n((x #b00000111))\nunsat\n', detail: shipped},
    files: {ok: sent === 'unsat\n', detail: sent},
  };
};
