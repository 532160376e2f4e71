"""The page API (wvwasi.js) in real headless Chromium against a real bridge and service host.

One browser and one served app per module; each test gets a fresh browser context (its own
session cookie and page session). Services are the C fixtures in tests/fixtures/c/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import ServedApp, chromium, served_app
from playwright.sync_api import Browser, Page
from projects import write_project

from wvwasi.runtime.bridge.protocol import WINDOW

# A hung page or bridge fails its test instead of stalling the whole run.
pytestmark = pytest.mark.timeout(120)

SERVICES: dict[str, dict[str, Any]] = {
    "echo": {"source": "echo_lines", "kind": "dedicated"},
    "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
    "stream": {"source": "echo_stream", "kind": "dedicated", "ipc": "stream"},
    "control": {"source": "control", "kind": "dedicated"},
    "blockread": {"source": "blockread", "kind": "dedicated"},
    "single": {"source": "blockread", "kind": "dedicated", "limits": {"instances": 1}},
    "stderr": {"source": "stderr_lines", "kind": "dedicated", "args": ["3"]},
    "flood": {"source": "flood", "kind": "dedicated", "ipc": "stream", "args": ["8"]},
    "hub": {"source": "control", "kind": "background"},
    "wc": {"source": "wc"},
    "trap": {"source": "trap"},
    "exit3": {"source": "exit3"},
    "spin": {"source": "loop", "limits": {"timeout": "300ms"}},
    "env": {"source": "env_args", "args": ["fixed"], "env": {"FROM_MANIFEST": "1"}},
    "readfile": {"source": "readfile", "preopens": [{"guest": "/data", "host": "data"}]},
    "picked": {"source": "readfile", "user_grants": True},
    "picked_rw": {"source": "write_rw", "user_grants": True},
    "scratchy": {"source": "write_rw", "scratch": True},
    "copy": {"source": "copyfile"},
    "small": {"source": "write_rw", "limits": {"files": 4, "files_size": 100}},
    "plant": {"source": "plant", "limits": {"files": 4}},
    "missing": {"source": "services/not-built-yet.wasm", "kind": "dedicated"},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def picks() -> list[Path | None]:
    """What the fake folder picker answers next (None = the user cancelled)."""
    return []


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    wasm_fixture: Callable[[str], Path],
    module_cache_dir: Path,
    picks: list[Path | None],
) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("page-api")
    root = write_project(base / "app", SERVICES, resolve_wasm=wasm_fixture)
    (root / "data").mkdir()
    (root / "data" / "note.txt").write_text("from the manifest\n")

    def picker() -> Path | None:
        return picks.pop(0)

    with served_app(root, dirs=base / "dirs", cache=module_cache_dir, picker=picker) as served:
        yield served


@pytest.fixture
def page(browser: Browser, app: ServedApp) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield app.open(context)
    finally:
        context.close()


# --- the page ------------------------------------------------------------------------------


def test_page_is_isolated_and_gets_the_api_before_its_scripts(page: Page, app: ServedApp) -> None:
    assert page.url == app.origin + "/"
    assert page.evaluate("crossOriginIsolated") is True
    page.evaluate("harness.until(() => document.querySelector('p').textContent !== 'loading')")
    assert page.text_content("#status") == "api ready"  # set by a module importing a module
    assert page.evaluate("getComputedStyle(document.getElementById('status')).color") == (
        "rgb(0, 128, 0)"
    )
    assert page.evaluate("document.getElementById('icon').naturalWidth") == 8
    services = page.evaluate("WasiWorker.services")
    assert set(services) == set(SERVICES)
    assert services["frames"] == {"kind": "dedicated", "ipc": "frames", "userGrants": False,
                                  "scratch": False}
    assert services["picked"]["userGrants"] is True


def test_csp_blocks_inline_scripts(page: Page, app: ServedApp) -> None:
    page.goto(app.origin + "/inline.html")
    assert page.evaluate("typeof WasiWorker") == "function"  # the injected tag still loads
    assert page.text_content("#inline") == "untouched"


# --- dedicated workers, every ipc mode ----------------------------------------------------------


def test_lines_keep_order_over_10k_pipelined_messages(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('echo');
        const got = harness.collect(w, 10000);
        for (let i = 0; i < 10000; i++) w.postMessage(`message ${i} h\u00e9llo \u2713`);
        const data = await got;
        w.terminate();
        return {
            types: [...new Set(data.map((d) => typeof d))],
            inOrder: data.every((d, i) => d === `message ${i} h\u00e9llo \u2713`),
            count: data.length,
        };
    }""")
    assert result == {"types": ["string"], "inOrder": True, "count": 10000}


def test_lines_carry_any_text_unchanged_and_refuse_lone_surrogates(page: Page) -> None:
    # Short ASCII, long ASCII and non-ASCII text take different encoding paths in wvwasi.js.
    result = page.evaluate("""async () => {
        const w = new WasiWorker('echo');
        const texts = ['', 'a', 'x'.repeat(255), 'y'.repeat(256), 'z'.repeat(257),
            'h\u00e9llo \u2713', '\ud83d\ude00', '\ufeffstarts with a BOM',
            'a'.repeat(300) + '\ud83d\ude00', '\u00e9' + 'b'.repeat(300), 'q'.repeat(100000)];
        const got = harness.collect(w, texts.length);
        for (const t of texts) w.postMessage(t);
        const back = await got;
        const lone = harness.thrown(() => w.postMessage('half \ud800 a pair'));
        w.terminate();
        return {same: back.map((b, i) => b === texts[i]), lone};
    }""")
    assert result["same"] == [True] * 11
    assert result["lone"]["name"] == "TypeError"
    assert "lone surrogate" in result["lone"]["message"]


def test_frames_carry_binary_messages_of_any_view(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('frames');
        const got = harness.collect(w, 5);
        const big = new Uint8Array(3 << 20).map((_, i) => i % 253);
        w.postMessage(new Uint8Array([1, 2, 3]).buffer);
        w.postMessage(new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 3));
        w.postMessage(new Uint16Array([0x0102]));
        w.postMessage(new ArrayBuffer(0));
        w.postMessage(big);
        const data = await got;
        w.terminate();
        const echoed = new Uint8Array(data[4]);
        return {
            buffers: data.every((d) => d instanceof ArrayBuffer),
            small: data.slice(0, 4).map((d) => Array.from(new Uint8Array(d))),
            bigIntact: echoed.length === big.length && echoed.every((b, i) => b === big[i]),
        };
    }""")
    assert result == {
        "buffers": True,
        "small": [[1, 2, 3], [8, 7], [2, 1], []],
        "bigIntact": True,
    }


def test_post_message_sends_a_copy_the_page_may_reuse_at_once(page: Page) -> None:
    # 10,000 small messages fill several of the page API's shared payload buffers (64 KiB
    # each); every 1,000th message is a large one with a buffer of its own.
    result = page.evaluate("""async () => {
        const w = new WasiWorker('frames');
        const n = 10000;
        const got = harness.collect(w, n);
        const small = new Uint32Array(4);
        const large = new Uint32Array(1000);
        for (let i = 0; i < n; i++) {
            const buf = i % 1000 === 999 ? large : small;
            buf.fill(i);
            w.postMessage(buf);
            buf.fill(0xdeadbeef);  // reused at once: what was sent must not change
        }
        const data = await got;
        w.terminate();
        const wrong = data.findIndex((d, i) => {
            const words = new Uint32Array(d);
            return words.length !== (i % 1000 === 999 ? 1000 : 4) || words.some((x) => x !== i);
        });
        return {count: data.length, wrong};
    }""")
    assert result == {"count": 10000, "wrong": -1}


def test_stream_mode_echoes_every_byte(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('stream');
        const sent = new Uint8Array(200000).map((_, i) => (i * 7) % 256);
        let received = [];
        let size = 0;
        const done = new Promise((resolve) => w.addEventListener('message', (e) => {
            received.push(new Uint8Array(e.data));
            size += e.data.byteLength;
            if (size >= sent.length) resolve();
        }));
        for (let i = 0; i < sent.length; i += 10000) w.postMessage(sent.subarray(i, i + 10000));
        await done;
        w.terminate();
        const all = new Uint8Array(size);
        let pos = 0;
        for (const c of received) { all.set(c, pos); pos += c.length; }
        return size === sent.length && all.every((b, i) => b === sent[i]);
    }""")
    assert result is True


def test_stdin_and_stdout_streams(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('stream');
        const out = harness.readAll(w.stdout);
        const ended = harness.ended(w);
        const writer = w.stdin.getWriter();
        await writer.write(new Uint8Array([1, 2, 3]));
        await writer.write('text');
        await writer.write(new Uint16Array([0x0a0b]).buffer);
        await writer.close();
        return {bytes: Array.from(await out), exit: (await ended).code};
    }""")
    assert result == {"bytes": [1, 2, 3, 116, 101, 120, 116, 11, 10], "exit": 0}


def test_stdout_stream_of_a_lines_service_is_its_raw_output(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('echo');
        const out = harness.readAll(w.stdout);
        w.postMessage('one');
        w.postMessage('two');
        await harness.collect(w, 2);
        await w.stdin.getWriter().close();
        return harness.text(await out);
    }""")
    assert result == "one\ntwo\n"


def test_stderr_goes_to_console_warn_and_the_stderr_stream(page: Page) -> None:
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    result = page.evaluate("""async () => {
        const w = new WasiWorker('stderr');
        const err = harness.readAll(w.stderr);
        const ended = harness.ended(w);
        return {stderr: harness.text(await err), ended: await ended};
    }""")
    assert result["stderr"] == "line 1\nline 2\nline 3\n"
    assert result["ended"] == {"code": 0, "kind": None, "errors": [], "messages": ["done"]}
    assert [w for w in warnings if w.startswith("[stderr]")] == [
        "[stderr] line 1", "[stderr] line 2", "[stderr] line 3",
    ]


def test_args_env_and_files_reach_a_dedicated_worker(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('control', {env: {GREETING: 'hi from the page'}});
        const got = harness.collect(w, 2);
        w.postMessage('env GREETING');
        const data = await got;
        w.terminate();
        return data;
    }""")
    assert result == ["ready", "hi from the page"]


# --- errors, exits, terminate ----------------------------------------------------------------


def test_wrong_message_types_throw_type_errors(page: Page) -> None:
    result = page.evaluate("""() => {
        const lines = new WasiWorker('echo');
        const frames = new WasiWorker('frames');
        const out = {
            bytesToLines: harness.thrown(() => lines.postMessage(new Uint8Array(2))),
            newline: harness.thrown(() => lines.postMessage('a\\nb')),
            stringToFrames: harness.thrown(() => frames.postMessage('text')),
            objectToFrames: harness.thrown(() => frames.postMessage({a: 1})),
        };
        lines.terminate();
        frames.terminate();
        return out;
    }""")
    assert result["bytesToLines"]["name"] == "TypeError"
    assert 'ipc = "lines"' in result["bytesToLines"]["message"]
    assert "takes a string, got Uint8Array" in result["bytesToLines"]["message"]
    assert "cannot contain a newline" in result["newline"]["message"]
    assert result["stringToFrames"]["name"] == "TypeError"
    assert 'ipc = "frames"' in result["stringToFrames"]["message"]
    assert "ArrayBuffer or a TypedArray, got string" in result["stringToFrames"]["message"]
    assert "got Object" in result["objectToFrames"]["message"]


def test_unknown_services_and_options_are_actionable_errors(page: Page) -> None:
    result = page.evaluate("""async () => ({
        ctor: harness.thrown(() => new WasiWorker('nope')),
        run: await harness.outcome(WasiWorker.run('nope')),
        option: harness.thrown(() => new WasiWorker('echo', {argv: ['x']})),
        args: harness.thrown(() => new WasiWorker('echo', {args: 'x'})),
        relative: await harness.outcome(WasiWorker.run('readfile', {files: {'in.txt': 'x'}})),
        nulArg: await harness.outcome(WasiWorker.run('env', {args: ['a\\0b']})),
        envName: await harness.ended(new WasiWorker('echo', {env: {'A=B': '1'}})),
        backgroundRun: await harness.outcome(WasiWorker.run('hub')),
    })""")
    assert result["ctor"]["name"] == "WasiError"
    assert result["ctor"]["kind"] == "lookup"
    assert "no service named 'nope'" in result["ctor"]["message"]
    assert "echo" in result["ctor"]["message"]  # lists what exists
    assert result["run"]["kind"] == "lookup"
    assert result["option"]["name"] == "TypeError"
    assert "unknown option 'argv'" in result["option"]["message"]
    assert "args must be an array of strings" in result["args"]["message"]
    assert "absolute guest path" in result["relative"]["message"]
    # Malformed values the app refuses are the page's mistake ("invalid"), not a failed start.
    assert result["nulArg"]["kind"] == "invalid"
    assert "args[0] must be a string without NUL" in result["nulArg"]["message"]
    assert result["envName"]["kind"] == "invalid"
    assert "env name 'A=B' is invalid" in result["envName"]["errors"][0]["message"]
    assert result["backgroundRun"]["kind"] == "permission"


def test_a_service_that_cannot_start_reports_why(page: Page) -> None:
    result = page.evaluate("""async () => ({
        worker: await harness.ended(new WasiWorker('missing')),
        run: await harness.outcome(WasiWorker.run('missing')),
    })""")
    assert result["worker"]["kind"] == "start"
    assert "not-built-yet.wasm" in result["worker"]["errors"][0]["message"]
    assert result["run"]["kind"] == "start"


def test_trap_fires_error_then_exit(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('control');
        const ended = harness.ended(w);
        w.postMessage('trap');
        return ended;
    }""")
    assert result["code"] is None
    assert result["kind"] == "trap"
    assert len(result["errors"]) == 1
    assert result["errors"][0]["kind"] == "trap"
    assert "service 'control' trapped" in result["errors"][0]["message"]


def test_exit_code_reaches_the_exit_event(page: Page) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('control');
        const ended = harness.ended(w);
        w.postMessage('hello');
        w.postMessage('exit 7');
        return ended;
    }""")
    assert result == {"code": 7, "kind": None, "errors": [], "messages": ["ready", "hello"]}


def test_terminate_stops_the_instance_and_fires_only_exit(page: Page, app: ServedApp) -> None:
    result = page.evaluate("""async () => {
        const w = new WasiWorker('blockread');
        await harness.collect(w, 1);
        const ended = harness.ended(w);
        w.terminate();
        w.postMessage('ignored after terminate');
        return ended;
    }""")
    assert result == {"code": None, "kind": "terminated", "errors": [], "messages": []}
    inst = [i for i in app.spy.instances if i.service.name == "blockread"][-1]
    exited = inst.wait(5)
    assert exited is not None and exited.error is not None
    assert exited.error.kind == "terminated"


def test_instance_limit_is_reported(page: Page) -> None:
    result = page.evaluate("""async () => {
        const first = new WasiWorker('single');
        await harness.collect(first, 1);
        const second = harness.ended(new WasiWorker('single'));
        const refused = await second;
        first.terminate();
        return refused;
    }""")
    assert result["kind"] == "limit"
    assert "limits.instances = 1" in result["errors"][0]["message"]


def test_reload_terminates_the_pages_dedicated_workers(page: Page, app: ServedApp) -> None:
    before = len(app.spy.instances)
    page.evaluate("""async () => {
        window.keep = [new WasiWorker('blockread'), new WasiWorker('echo')];
        await harness.collect(window.keep[0], 1);
    }""")
    # Spawns start on the bridge's pool: the echo may still be starting once blockread spoke.
    deadline = time.monotonic() + 10
    while len(app.spy.instances) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = app.spy.instances[before:]
    assert sorted(i.service.name for i in started) == ["blockread", "echo"]
    assert all(i.alive for i in started)
    page.reload()
    for inst in started:
        exited = inst.wait(5)
        assert exited is not None and exited.error is not None
        assert exited.error.kind == "terminated"


def test_output_is_paused_while_the_page_does_not_read(page: Page, app: ServedApp) -> None:
    page.evaluate("""() => {
        const w = window.flood = new WasiWorker('flood');
        window.floodReceived = 0;
        w.addEventListener('message', (e) => { window.floodReceived += e.data.byteLength; });
        window.floodOut = w.stdout;  // a stream nobody reads yet: it fills up, then pauses
    }""")
    page.evaluate("harness.until(() => window.floodReceived > 0)")
    page.wait_for_timeout(1000)  # time in which an unpaused 8 MiB flood would arrive
    received = page.evaluate("window.floodReceived")
    inst = [i for i in app.spy.instances if i.service.name == "flood"][-1]
    assert inst.alive  # blocked writing stdout, not finished
    # At most: the stream's 1 MiB high-water mark (plus the chunk that crossed it), and one
    # window in flight when the page stopped crediting. An unpaused flood would deliver 8 MiB.
    assert received <= 3 * WINDOW
    result = page.evaluate("""async () => {
        const ended = harness.ended(window.flood);
        const bytes = await harness.readAll(window.floodOut);
        return {size: bytes.length, pattern: bytes.every((b, i) => b === i % 251),
                code: (await ended).code};
    }""")
    assert result == {"size": 8 << 20, "pattern": True, "code": 0}


# --- background services -----------------------------------------------------------------------


def test_background_service_is_shared_and_outlives_pages(
    browser: Browser, page: Page, app: ServedApp
) -> None:
    assert page.evaluate("""async () => {
        window.hubA = new WasiWorker('hub');
        window.hubB = new WasiWorker('hub');
        return await harness.connected(hubA, 'a') && await harness.connected(hubB, 'b');
    }""")
    context = browser.new_context()
    try:
        other = app.open(context)
        assert other.evaluate("""async () => {
            window.hubC = new WasiWorker('hub');
            const up = await harness.connected(hubC, 'c');
            window.gotC = harness.waitFor(hubC, 'hello everyone');
            return up;
        }""")
        result = page.evaluate("""async () => {
            const a = harness.waitFor(hubA, 'hello everyone');
            const b = harness.waitFor(hubB, 'hello everyone');
            hubB.postMessage('hello everyone');
            return [await a, await b];
        }""")
        assert result == ["hello everyone", "hello everyone"]
        assert other.evaluate("window.gotC") == "hello everyone"
        # terminate() only disconnects this worker; a page reload only that page's workers.
        page.evaluate("async () => { const e = harness.ended(hubA); hubA.terminate(); await e; }")
        page.reload()
        again = other.evaluate("""async () => {
            const got = harness.waitFor(hubC, 'still here');
            hubC.postMessage('still here');
            return got;
        }""")
        assert again == "still here"
    finally:
        context.close()
    assert ("spawn", "hub") not in app.spy.calls
    assert app.spy.calls.count(("subscribe", "hub")) == 3


def test_background_service_takes_no_options(page: Page) -> None:
    result = page.evaluate("harness.ended(new WasiWorker('hub', {args: ['x']}))")
    assert result["kind"] == "permission"
    assert 'kind = "background"' in result["errors"][0]["message"]


# --- run -----------------------------------------------------------------------------------------


def test_run_collects_output_for_every_stdin_type(page: Page) -> None:
    result = page.evaluate("""async () => {
        const text = 'one two\\nthree\\n';
        const results = [];
        for (const stdin of [text, new Blob([text]), new TextEncoder().encode(text), undefined]) {
            results.push(await WasiWorker.run('wc', {stdin}));
        }
        return results.map((r) => [r.exitCode, r.stdout, r.stderr, r.stdoutBytes.length]);
    }""")
    assert result == [[0, "2 3 14\n", "", 7]] * 3 + [[0, "0 0 0\n", "", 6]]


def test_run_resolves_nonzero_exits_and_rejects_traps_and_timeouts(page: Page) -> None:
    result = page.evaluate("""async () => ({
        exit3: await WasiWorker.run('exit3'),
        trap: await harness.outcome(WasiWorker.run('trap')),
        spin: await harness.outcome(WasiWorker.run('spin')),
    })""")
    assert result["exit3"]["exitCode"] == 3
    assert result["exit3"]["stdout"] == "exiting with 3\n"
    assert result["trap"]["name"] == "WasiError"
    assert result["trap"]["kind"] == "trap"
    assert "service 'trap' trapped" in result["trap"]["message"]
    assert result["spin"]["kind"] == "timeout"
    assert "limits.timeout" in result["spin"]["message"]


def test_run_appends_args_and_env(page: Page) -> None:
    out = page.evaluate("""async () => (await WasiWorker.run('env', {
        args: ['from page', '--flag'], env: {FROM_PAGE: 'yes'},
    })).stdout""").splitlines()
    assert out[:4] == ["arg[0]=env", "arg[1]=fixed", "arg[2]=from page", "arg[3]=--flag"]
    assert "env:FROM_MANIFEST=1" in out
    assert "env:FROM_PAGE=yes" in out


def test_files_option_gives_one_instance_read_only_files(page: Page) -> None:
    result = page.evaluate("""async () => {
        const read = (data) => WasiWorker.run('readfile', {
            args: ['/in/photo.jpg'], files: {'/in/photo.jpg': data},
        });
        const bytes = new Uint8Array([0, 1, 2, 255]);
        const outs = [];
        for (const data of [new Blob([bytes]), bytes.buffer, bytes, 'caf\u00e9']) {
            outs.push(Array.from((await read(data)).stdoutBytes));
        }
        const without = await WasiWorker.run('readfile', {args: ['/in/photo.jpg']});
        const w = new WasiWorker('readfile', {
            args: ['/in/a.txt'], files: {'/in/a.txt': 'worker file'},
        });
        const worker = await harness.ended(w);
        return {outs, without: [without.exitCode, without.stderr], worker};
    }""")
    assert result["outs"] == [[0, 1, 2, 255]] * 3 + [[99, 97, 102, 195, 169]]
    assert result["without"][0] == 1
    assert result["without"][1].startswith("open /in/photo.jpg: E")
    assert result["worker"] == {"code": 0, "kind": None, "errors": [],
                                "messages": ["worker file"]}


def test_outputs_hand_written_files_back_to_the_page(page: Page) -> None:
    result = page.evaluate("""async () => {
        const data = new Uint8Array((3 << 20) + 5).map((_, i) => i % 251);
        const same = (got) => got.length === data.length && got.every((b, i) => b === data[i]);
        const io = {args: ['/in/a', '/out/b'], files: {'/in/a': data}};
        const run = await WasiWorker.run('copy', {...io, outputs: ['/out/b', '/out/none']});
        const got = [];
        let closed = false;
        let aborted = null;
        const sink = new WritableStream({write: (c) => { got.push(c); },
                                         close: () => { closed = true; }});
        const missing = new WritableStream({
            abort: (e) => { aborted = `${e.kind}: ${e.message}`; }});
        const w = new WasiWorker('copy', {...io, outputs: {'/out/b': sink, '/out/none': missing}});
        const exit = await new Promise((resolve) => { w.onexit = (e) => resolve(e.code); });
        await harness.until(() => closed && aborted);
        const streamed = new Uint8Array(got.reduce((n, c) => n + c.length, 0));
        got.reduce((at, c) => { streamed.set(c, at); return at + c.length; }, 0);
        const nested = await WasiWorker.run('plant', {args: ['w:/out/sub/a=one', 'w:/out/b=two'],
            outputs: ['/out/sub/a', '/out/b']});
        return {keys: Object.keys(run.outputs), run: same(run.outputs['/out/b']),
                stdout: run.stdout, exit, pieces: got.length, streamed: same(streamed), aborted,
                nested: Object.fromEntries(Object.entries(nested.outputs).map(
                    ([k, v]) => [k, new TextDecoder().decode(v)]))};
    }""")
    assert result == {"keys": ["/out/b"], "run": True, "stdout": f"{(3 << 20) + 5}\n", "exit": 0,
                      "pieces": 4, "streamed": True,
                      "aborted": "output: service 'copy' did not write /out/none",
                      "nested": {"/out/sub/a": "one", "/out/b": "two"}}


def test_outputs_are_bounded_and_checked_like_files(page: Page) -> None:
    result = page.evaluate("""async () => {
        const o = (name, options) => harness.outcome(WasiWorker.run(name, options));
        return {
            big: await o('small', {args: ['/out/r', 'x'.repeat(101)], outputs: ['/out/r']}),
            fits: (await WasiWorker.run('small', {args: ['/out/r', 'x'.repeat(100)],
                                                  outputs: ['/out/r']})).outputs['/out/r'].length,
            entries: await o('plant', {args: ['w:/o/1=x', 'w:/o/2=x', 'w:/o/3=x', 'w:/o/4=x',
                                              'w:/o/5=x'], outputs: ['/o/1']}),
            link: (await WasiWorker.run('plant', {args: ['w:/o/b=mine', 's:b:/o/a'],
                                                  outputs: ['/o/a']})).outputs,
            many: await o('small', {outputs: ['/o/1', '/o/2', '/o/3', '/o/4', '/o/5']}),
            shadow: await o('readfile', {outputs: ['/data/x']}),
            overlap: await o('small', {outputs: ['/o/a', '/o/a/b']}),
            root: await o('small', {outputs: ['/x']}),
            worker: await harness.outcome(
                (async () => new WasiWorker('copy', {outputs: ['/o/a']}))()),
            background: await harness.ended(
                new WasiWorker('hub', {outputs: {'/o/a': new WritableStream()}})),
        };
    }""")
    for key in ("big", "entries"):
        assert result[key]["kind"] == "output", result[key]
    assert "services.small.limits.files_size" in result["big"]["message"]
    assert "services.plant.limits.files)" in result["entries"]["message"]
    assert result["fits"] == 100
    assert result["link"] == {}
    assert result["many"]["kind"] == "permission"
    assert "services.small.limits.files = 4" in result["many"]["message"]
    assert result["shadow"]["kind"] == "permission" and "/data" in result["shadow"]["message"]
    assert result["overlap"]["kind"] == "invalid"
    assert result["root"]["name"] == result["worker"]["name"] == "TypeError"
    assert result["background"]["kind"] == "permission"


def test_manifest_preopens_and_scratch(page: Page) -> None:
    result = page.evaluate("""async () => ({
        data: (await WasiWorker.run('readfile', {args: ['/data/note.txt']})).stdout,
        scratch: (await WasiWorker.run('scratchy', {
            args: ['/scratch/x.txt', 'scratch works'], scratch: true})).stdout,
    })""")
    assert result == {"data": "from the manifest\n", "scratch": "scratch works"}


# --- the page cannot widen the manifest --------------------------------------------------------


def test_page_cannot_widen_the_manifest(page: Page) -> None:
    result = page.evaluate("""async () => ({
        scratch: await harness.outcome(WasiWorker.run('wc', {scratch: true})),
        shadow: await harness.outcome(WasiWorker.run('readfile', {
            args: ['/data/note.txt'], files: {'/data/note.txt': 'forged'}})),
        forged: await harness.outcome(WasiWorker.run('picked', {
            grants: [{grant: {id: 'forged-grant-id'}, guest: '/picked'}]})),
        workerScratch: await harness.ended(new WasiWorker('echo', {scratch: true})),
    })""")
    assert result["scratch"]["kind"] == "permission"
    assert "services.wc.scratch = true" in result["scratch"]["message"]
    assert result["shadow"]["kind"] == "permission"
    assert "preopen /data" in result["shadow"]["message"]
    assert result["forged"]["kind"] == "permission"
    assert "unknown directory grant" in result["forged"]["message"]
    assert result["workerScratch"]["kind"] == "permission"


def test_request_directory_grants_only_what_the_user_picked(
    page: Page, picks: list[Path | None], tmp_path: Path
) -> None:
    folder = tmp_path / "picked"
    folder.mkdir()
    (folder / "hello.txt").write_text("hi from the user\n")
    picks.extend([folder, folder, folder])
    result = page.evaluate("""async () => {
        const ro = await WasiWorker.requestDirectory();
        const rw = await WasiWorker.requestDirectory({mode: 'rw'});
        const other = await WasiWorker.requestDirectory({mode: 'ro'});
        const write = (grant, mode) => WasiWorker.run('picked_rw', {
            args: ['/picked/out.txt', `written with ${mode}`],
            grants: [mode ? {grant, guest: '/picked', mode} : {grant, guest: '/picked'}],
        });
        return {
            grant: {name: ro.name, mode: ro.mode, keys: Object.keys(ro)},
            read: (await WasiWorker.run('picked', {
                args: ['/picked/hello.txt'], grants: [ro]})).stdout,
            rwOnRo: await harness.outcome(write(ro, 'rw')),
            roWrite: await harness.outcome(write(other)),
            rwWrite: await harness.outcome(write(rw, 'rw')),
            notAllowed: await harness.outcome(WasiWorker.run('readfile', {
                args: ['/picked/hello.txt'], grants: [{grant: ro, guest: '/picked'}]})),
            roId: ro.id,
        };
    }""")
    assert result["grant"] == {"name": "picked", "mode": "ro", "keys": ["name", "mode"]}
    assert result["read"] == "hi from the user\n"
    assert result["rwOnRo"]["kind"] == "permission"
    assert "read-only" in result["rwOnRo"]["message"]
    assert result["roWrite"]["ok"]["exitCode"] == 1  # the folder is mounted read-only
    assert result["rwWrite"]["ok"]["stdout"] == "written with rw"
    assert (folder / "out.txt").read_text() == "written with rw"
    assert result["notAllowed"]["kind"] == "permission"
    assert "services.readfile.user_grants = true" in result["notAllowed"]["message"]
    assert len(result["roId"]) >= 32


def test_grants_are_bound_to_their_page_session(
    browser: Browser, page: Page, app: ServedApp, picks: list[Path | None], tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("only for the first page\n")
    picks.append(tmp_path)
    grant_id = page.evaluate("(async () => (await WasiWorker.requestDirectory()).id)()")
    context = browser.new_context()
    try:
        other = app.open(context)
        stolen = other.evaluate("""(id) => harness.outcome(WasiWorker.run('picked', {
            args: ['/picked/secret.txt'], grants: [{grant: {id}, guest: '/picked'}]}))""", grant_id)
    finally:
        context.close()
    assert stolen["kind"] == "permission"
    assert "unknown directory grant" in stolen["message"]
    # ... and after a reload the same page session is gone too.
    page.reload()
    again = page.evaluate("""(id) => harness.outcome(WasiWorker.run('picked', {
        args: ['/picked/secret.txt'], grants: [{grant: {id}, guest: '/picked'}]}))""", grant_id)
    assert again["kind"] == "permission"


def test_cancelled_picker_rejects(page: Page, picks: list[Path | None]) -> None:
    picks.append(None)
    result = page.evaluate("harness.outcome(WasiWorker.requestDirectory({mode: 'rw'}))")
    assert result["kind"] == "cancelled"
    assert "cancelled" in result["message"]


def test_a_failing_picker_rejects(
    browser: Browser, tmp_path: Path, wasm_fixture: Callable[[str], Path], module_cache_dir: Path
) -> None:
    def broken() -> Path:
        raise RuntimeError("the window is closing")

    root = write_project(tmp_path / "app", {"wc": {"source": "wc"}}, resolve_wasm=wasm_fixture)
    with served_app(root, dirs=tmp_path, cache=module_cache_dir, picker=broken) as served:
        context = browser.new_context()
        try:
            page = served.open(context)
            result = page.evaluate("harness.outcome(WasiWorker.requestDirectory())")
        finally:
            context.close()
    assert result["kind"] == "unavailable"
    assert "the window is closing" in result["message"]


# --- wvwasi dev and wvwasi serve ---------------------------------------------------------------


def test_dev_reload_reloads_connected_pages(
    browser: Browser, tmp_path: Path, wasm_fixture: Callable[[str], Path], module_cache_dir: Path
) -> None:
    root = write_project(tmp_path / "app", {"wc": {"source": "wc"}}, resolve_wasm=wasm_fixture)
    with served_app(root, dirs=tmp_path, cache=module_cache_dir, dev=True) as served:
        context = browser.new_context()
        try:
            page = served.open(context)
            page.evaluate("window.beforeReload = true")
            page.evaluate("WasiWorker.run('wc')")  # the page's connection is up by now
            with page.expect_event("load"):
                served.bridge.reload()
            assert page.evaluate("window.beforeReload") is None
            assert page.evaluate("typeof WasiWorker") == "function"
        finally:
            context.close()


def test_wvwasi_serve_serves_the_app_without_a_picker(
    browser: Browser, tmp_path: Path, wasm_fixture: Callable[[str], Path]
) -> None:
    root = write_project(tmp_path / "app", {"wc": {"source": "wc"}}, resolve_wasm=wasm_fixture)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wvwasi", "serve", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Serving Test App at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].strip()
        assert "/__wvwasi/launch?token=" in url
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            result = page.evaluate("""async () => {
                let pick;
                try {
                    pick = {ok: await WasiWorker.requestDirectory()};
                } catch (e) {
                    pick = {kind: e.kind, message: e.message};
                }
                return {wc: (await WasiWorker.run('wc', {stdin: 'a b c'})).stdout, pick};
            }""")
        finally:
            context.close()
        assert result["wc"] == "0 3 5\n"
        assert result["pick"]["kind"] == "unavailable"
        assert "wvwasi serve has none" in result["pick"]["message"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.strip().endswith("Stopped.")
