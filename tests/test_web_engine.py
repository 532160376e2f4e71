"""The browser engine (runtime/js/wasi-engine.js) in real headless Chromium, with real C programs:
blocking stdin, sleeping, exit codes, and traps/limits reported exactly like the native host
(the same program's error under ServiceHost is the reference)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from browser import chromium
from playwright.sync_api import Page
from webwasi import engine_site, static_site

from wvwasi.runtime.manifest import load_manifest

PROGRAMS = ("echo_lines", "echo_stream", "blockread", "exit3", "trap", "membomb", "loop", "escape",
            "env_args", "sleep_poll")
NATIVE: dict[str, dict[str, Any]] = {
    "trap": {"source": "trap"},
    "timeout": {"source": "loop", "limits": {"timeout": "300ms"}},
    "bomb": {"source": "membomb", "limits": {"memory": "32MiB"}},
}

#: Helpers the tests' scripts use: start(program, options) -> {inst, out, err, exit}.
HELPERS = """
globalThis.wasm = async (name) => (await fetch(`/wasm/${name}.wasm`)).arrayBuffer();
globalThis.start = async (name, options = {}) => {
  const inst = new engine.WasiInstance({name, module: await wasm(name), args: [name],
    stdin: 'stream', ...options});
  const s = {inst, out: '', err: '', exit: null};
  const dec = new TextDecoder();
  inst.onstdout = (b) => { s.out += dec.decode(b); };
  inst.onstderr = (b) => { s.err += dec.decode(b); };
  s.exited = new Promise((resolve) => { inst.onexit = (r) => { s.exit = r; resolve(r); }; });
  return s;
};
globalThis.until = async (test, ms = 10000) => {
  const end = performance.now() + ms;
  while (!test()) {
    if (performance.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};
globalThis.pause = (ms) => new Promise((r) => setTimeout(r, ms));
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, wasm_fixtures: dict[str, Path]) -> Path:
    folder = engine_site(tmp_path_factory.mktemp("engine"))
    (folder / "wasm").mkdir()
    for name in PROGRAMS:
        shutil.copy(wasm_fixtures[name], folder / "wasm" / f"{name}.wasm")
    (folder / "wasm" / "not-wasm.wasm").write_text("<html>404</html>")
    (folder / "wasm" / "unknown-imports.wasm").write_bytes(wasmtime.wat2wasm(
        '(module (import "env" "nope" (func)) (memory (export "memory") 1)'
        ' (func (export "_start")))'))
    return folder


def _page(browser: Any, origin: str) -> Page:
    page = browser.new_page()
    page.goto(origin + "/engine.html")
    page.wait_for_function("globalThis.engineReady === true")
    page.evaluate(HELPERS)
    return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page(site: Path, browser: Any) -> Iterator[Page]:
    with static_site(site) as served:
        page = _page(browser, served.origin)
        assert page.evaluate("crossOriginIsolated") is True
        yield page
        page.close()


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory, wasm_fixtures: dict[str, Path],
           module_cache_dir: Path) -> Iterator[Callable[[str], Any]]:
    """`native("trap")` -> the native host's TaskResult for that service of NATIVE."""
    from projects import write_project

    from wvwasi.runtime.host.service_host import ServiceHost
    from wvwasi.runtime.paths import PathContext

    root = write_project(tmp_path_factory.mktemp("native") / "app", NATIVE,
                         resolve_wasm=lambda n: wasm_fixtures[n])
    manifest = load_manifest(root)
    paths = PathContext.for_app(manifest, base_dirs={"CACHE": module_cache_dir,
                                                     "APPDATA": root / "appdata"})
    host = ServiceHost(manifest, paths=paths)
    yield lambda name: host.run_task(name)
    host.close()
    paths.close()


def test_stdin_blocks_until_the_page_writes(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('echo_lines');
      await pause(300);
      const before = s.out;
      await s.inst.writeStdin(new TextEncoder().encode('hello\\n'));
      await until(() => s.out === 'hello\\n');
      await pause(200);
      const stillRunning = s.exit === null;
      await s.inst.writeStdin(new TextEncoder().encode('world\\n'));
      s.inst.closeStdin();
      const exit = await s.exited;
      return {before, stillRunning, out: s.out, exit};
    }""")
    assert result["before"] == ""
    assert result["stillRunning"] is True
    assert result["out"] == "hello\nworld\n"
    assert result["exit"]["code"] == 0 and result["exit"]["error"] is None


def test_stdin_larger_than_the_ring_arrives_whole(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('echo_stream');
      const size = 5 * (1 << 20) + 123;
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 13)) & 255;
      const chunks = [];
      s.inst.onstdout = (b) => chunks.push(b);
      await s.inst.writeStdin(data);
      s.inst.closeStdin();
      const exit = await s.exited;
      const out = engine.concat(chunks);
      let same = out.length === size;
      for (let i = 0; same && i < size; i++) same = out[i] === data[i];
      return {same, length: out.length, exit};
    }""")
    assert result["same"], result["length"]
    assert result["exit"]["code"] == 0


def test_blocked_reader_stays_blocked_until_eof(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('blockread');
      await until(() => s.out === 'waiting\\n');
      await pause(500);
      const blocked = s.exit === null;
      s.inst.closeStdin();
      return {blocked, exit: await s.exited};
    }""")
    assert result["blocked"] is True
    assert result["exit"] == {"code": 0, "error": None, "trees": {}}


def test_sleep_and_stdin_poll_wait_for_real(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('sleep_poll', {args: ['sleep_poll', '250', '300']});
      await until(() => s.out.includes('slept'));
      setTimeout(() => s.inst.writeStdin(new TextEncoder().encode('x')), 100);
      return {exit: await s.exited, out: s.out};
    }""")
    slept, polled = result["out"].splitlines()
    assert result["exit"]["code"] == 0
    assert int(slept.split()[1]) >= 250
    assert polled.startswith("stdin readable after")  # woken by the write, not the timeout


def test_stdin_poll_times_out(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('sleep_poll', {args: ['sleep_poll', '0', '200']});
      return {exit: await s.exited, out: s.out};
    }""")
    polled = result["out"].splitlines()[1]
    assert polled.startswith("stdin quiet after") and int(polled.split()[-1]) >= 200


def test_args_env_and_exit_code(page: Page) -> None:
    result = page.evaluate("""async () => {
      const env = await engine.runWasi({name: 'env_args', module: await wasm('env_args'),
        args: ['env_args', 'a b', 'ü'], env: [['K', 'v=1']]});
      const exit3 = await engine.runWasi({name: 'exit3', module: await wasm('exit3')});
      const dec = new TextDecoder();
      return {env: dec.decode(env.stdout), exit3: exit3.exitCode, error: exit3.error,
              out3: dec.decode(exit3.stdout)};
    }""")
    assert result["env"] == "arg[0]=env_args\narg[1]=a b\narg[2]=ü\nenv:K=v=1\n"
    assert result["exit3"] == 3 and result["error"] is None
    assert result["out3"] == "exiting with 3\n"


def test_trap_is_reported_like_the_native_host(page: Page, native: Callable[[str], Any]) -> None:
    error = page.evaluate("""async () => (await engine.runWasi({name: 'trap',
      module: await wasm('trap')})).error""")
    expected = native("trap").error
    assert error == {"kind": expected.kind, "message": expected.message}


def test_timeout_is_reported_like_the_native_host(page: Page,
                                                   native: Callable[[str], Any]) -> None:
    result = page.evaluate("""async () => engine.runWasi({name: 'timeout',
      module: await wasm('loop'), limits: {timeout: 0.3}})""")
    expected = native("timeout").error
    assert result["exitCode"] is None
    assert result["error"] == {"kind": expected.kind, "message": expected.message}


def test_memory_limit_is_reported_like_the_native_host(page: Page,
                                                       native: Callable[[str], Any]) -> None:
    result = page.evaluate("""async () => {
      const r = await engine.runWasi({name: 'bomb', module: await wasm('membomb'),
        limits: {memory: 32 * 1024 * 1024}});
      return {error: r.error, stderr: new TextDecoder().decode(r.stderr)};
    }""")
    expected = native("bomb")
    assert result["error"]["kind"] == expected.error.kind == "memory"
    assert result["error"]["message"] == expected.error.message
    assert result["stderr"] == expected.stderr.decode()


def test_terminate_stops_a_spinning_guest(page: Page) -> None:
    result = page.evaluate("""async () => {
      const s = await start('loop');
      await until(() => s.out === 'spinning\\n');
      s.inst.terminate();
      return await s.exited;
    }""")
    assert result["code"] is None
    assert result["error"] == {"kind": "terminated", "message": "service 'loop' was terminated"}


@pytest.mark.parametrize(("program", "detail"), [
    ("not-wasm", "failed to start"),
    ("unknown-imports", "failed to start"),
])
def test_bad_modules_fail_to_start(page: Page, program: str, detail: str) -> None:
    result = page.evaluate("""async (program) => {
      const module = await wasm(program);
      return (await engine.runWasi({name: program, module})).error;
    }""", program)
    assert result["kind"] == "start"
    assert result["message"].startswith(f"service '{program}' {detail}: ")


def test_without_isolation_stdin_streams_are_refused_clearly(site: Path, browser: Any) -> None:
    with static_site(site, isolated=False) as served:
        page = _page(browser, served.origin)
        result = page.evaluate("""async () => {
          let refused;
          try { await start('echo_lines'); }
          catch (e) { refused = {kind: e.kind, message: e.message}; }
          const r = await engine.runWasi({name: 'echo_lines', module: await wasm('echo_lines'),
            stdin: new TextEncoder().encode('fixed\\n')});
          return {isolated: crossOriginIsolated, refused, out: new TextDecoder().decode(r.stdout),
                  code: r.exitCode};
        }""")
        page.close()
    assert result["isolated"] is False
    assert result["refused"]["kind"] == "isolation"
    assert "Cross-Origin-Opener-Policy" in result["refused"]["message"]
    assert result["out"] == "fixed\n" and result["code"] == 0


ATTACKS = (
    "r:/data/note.txt", "r:/data/../etc/passwd", "r:/etc/passwd", "r:/data/up", "r:/data/abs",
    "r:/data/sub/../note.txt", "r:/data/sub/../../data/note.txt", "r:/data/loop",
    "w:/data/new.txt", "w:/work/x.txt", "w:/work/../data/y.txt", "w:/data/up",
    "s:/etc/passwd:/work/l1", "s:../../x:/work/l2", "s:../data/note.txt:/work/l3",
    "r:/work/l2", "r:/work/l3", "d:/data", "d:/work", "d:/", "d:/data/..",
)


def _plant(root: Path) -> None:
    data, work = root / "data", root / "work"
    (data / "sub").mkdir(parents=True)
    work.mkdir()
    (data / "note.txt").write_text("inside\n")
    (data / "up").symlink_to("../../../../../../etc/passwd")
    (data / "abs").symlink_to("/etc/passwd")
    (data / "loop").symlink_to("loop")


def _native(wasm: Path, root: Path, args: list[str]) -> str:
    config = wasmtime.WasiConfig()
    config.argv = ["escape", *args]
    config.preopen_dir(str(root / "data"), "/data", fs_mutable=False)
    config.preopen_dir(str(root / "work"), "/work")
    out = root / "out.txt"
    config.stdout_file = str(out)
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    start = linker.instantiate(store, wasmtime.Module.from_file(engine, str(wasm))).exports(
        store)["_start"]
    assert isinstance(start, wasmtime.Func)
    start(store)
    return out.read_text()


def test_escapes_are_refused_exactly_like_the_native_host(
    page: Page, tmp_path: Path, wasm_fixtures: dict[str, Path]
) -> None:
    from wvwasi.packager.web import tree_index

    _plant(tmp_path / "native")
    expected = _native(wasm_fixtures["escape"], tmp_path / "native", list(ATTACKS))
    _plant(tmp_path / "web")
    trees = {}
    for name in ("data", "work"):
        folder = tmp_path / "web" / name
        trees[name] = [{**e, "data": list((folder / e["path"]).read_bytes())}
                       if e["type"] == "file" else e for e in tree_index(folder)]
    result = page.evaluate("""async ([trees, args]) => {
      const bytes = (es) => es.map((e) => e.data ? {...e, data: new Uint8Array(e.data)} : e);
      const r = await engine.runWasi({name: 'escape', module: await (await fetch(
        '/wasm/escape.wasm')).arrayBuffer(), args: ['escape', ...args], preopens: [
          {guest: '/data', mode: 'ro', entries: bytes(trees.data)},
          {guest: '/work', mode: 'rw', entries: bytes(trees.work)}]});
      return {out: new TextDecoder().decode(r.stdout), code: r.exitCode};
    }""", [trees, list(ATTACKS)])
    assert "inside" in expected and "root:" not in expected
    assert result == {"out": expected, "code": 0}


def test_the_engine_behaves_the_same_in_webkitgtk(site: Path, tmp_path: Path,
                                                  native: Callable[[str], Any]) -> None:
    """tests/web/engine-checks.js in a real pywebview GTK window (WebKitGTK under Xvfb)."""
    from webwasi import webkit_window

    with static_site(site) as served, webkit_window(served.origin + "/engine-checks.html",
                                                    tmp_path):
        r = served.results.get(timeout=120)
    assert r["isolated"] is True
    assert r["blockingStdin"] == {"before": "", "out": "hello\n", "code": 0}
    assert r["bigStdin"] == {"same": True}
    slept, polled = r["sleep"]["out"].splitlines()
    assert int(slept.split()[1]) >= 200 and polled.startswith("stdin quiet after")
    trap, bomb = native("trap"), native("bomb")
    assert r["trap"] == {"kind": trap.error.kind, "message": trap.error.message}
    assert r["memory"] == {"error": {"kind": "memory", "message": bomb.error.message},
                           "stderr": bomb.stderr.decode()}
    assert r["terminate"] == {"kind": "terminated", "message": "service 'loop' was terminated"}
