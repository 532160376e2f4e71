"""`wvwasi.dialog.openFile/saveFile` and launched documents as FileGrants, in headless Chromium
against a real bridge; the native dialog is a callback (as `requestDirectory`'s picker is in
test_page_api.py), answering with what the test queued. The same project built for the web maps
the dialogs to the browser's pickers: File System Access (its picker stood in for by one that
answers with real handles of the page's origin private file system) and the `<input type=file>`
fallback (Playwright's file chooser); the same page script gets the same grants and hands a
service the same file on both."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import ServedApp, chromium, served_app
from playwright.sync_api import Browser, Page
from projects import write_project

from wvwasi.packager.web import SiteServer, write_site
from wvwasi.runtime.bridge.grants import FileRequest
from wvwasi.runtime.bridge.static import UIFiles
from wvwasi.runtime.manifest import WEB, load_manifest

PAGE = "<!doctype html><title>dialogs</title><p>dialogs</p>"
#: More files of the app's UI, for wvwasi.window.open's check of page names.
UI_FILES = {"second.html": "<!doctype html><title>second</title><p>second</p>",
            "tools/index.html": "<!doctype html><title>tools</title>", "app.js": "1;",
            ".hidden.html": "<!doctype html><title>hidden</title>"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def answers() -> list[list[Path] | None]:
    """What the fake file dialog answers next (None: the user cancelled)."""
    return []


@pytest.fixture(scope="module")
def folders() -> list[Path | None]:
    """What the fake folder picker (requestDirectory) answers next (None: cancelled)."""
    return []


@pytest.fixture(scope="module")
def requests() -> list[FileRequest]:
    return []


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory,
            wasm_fixture: Callable[[str], Path]) -> Path:
    root = write_project(tmp_path_factory.mktemp("dialogs") / "app", {
        "readfile": {"source": "readfile"},
        "tree": {"source": "observe", "user_grants": True},
        "tree_live": {"source": "observe", "user_grants": True, "kind": "dedicated"},
        # bounds of a picked folder's copy on the web: at most 8 entries, at most 20 bytes
        "few": {"source": "observe", "user_grants": True, "limits": {"files": 8}},
        "small": {"source": "observe", "user_grants": True, "limits": {"files_size": 20}},
    }, resolve_wasm=wasm_fixture, html=PAGE, extra={"window": {"title": "Dialogs",
                                                              "width": 500, "height": 400}})
    for name, text in UI_FILES.items():
        (root / "ui" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "ui" / name).write_text(text)
    shutil.copy(wasm_fixture("observe"), root / "ui" / "observe.wasm")  # a page-supplied module
    return root


@pytest.fixture(scope="module")
def app(project: Path, tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path,
        docs: Path, answers: list[list[Path] | None], requests: list[FileRequest],
        folders: list[Path | None]) -> Iterator[ServedApp]:
    base, root = tmp_path_factory.mktemp("dialogs-desktop"), project

    def file_picker(request: FileRequest) -> list[Path] | None:
        requests.append(request)
        return answers.pop(0)

    launched = {"tok-editor": (docs / "launched.note", "rw")}
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir, copy_pages=False,
                    file_picker=file_picker, launched=launched.get,
                    picker=lambda: folders.pop(0)) as served:
        yield served


@pytest.fixture
def page(browser: Browser, app: ServedApp) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield app.open(context)
    finally:
        context.close()


def refusal(page: Page, expression: str) -> str:
    """The WasiError kind `expression` (a Promise) rejects with."""
    return page.evaluate(f"{expression}.then(() => 'resolved', (e) => e.kind ?? String(e))")


def test_open_file_reads_and_only_rw_grants_write(page: Page, docs: Path,
                                                  answers: list, requests: list[FileRequest]):
    note = docs / "a.note"
    note.write_text("first text")
    answers.append([note])
    assert page.evaluate("""(async () => {
        globalThis.ro = await wvwasi.dialog.openFile({accept: ['.note']});
        return [ro instanceof FileGrant, ro.name, ro.mode, await ro.text()];
    })()""") == [True, "a.note", "ro", "first text"]
    assert requests[-1] == FileRequest("open", ("note",), False, "")
    assert refusal(page, "ro.write('x')") == "permission"
    assert note.read_text() == "first text"
    note.chmod(0o640)
    answers.append([note])
    page.evaluate("""(async () => {
        const rw = await wvwasi.dialog.openFile({mode: 'rw'});
        await rw.write(new TextEncoder().encode('second text'));
    })()""")
    assert note.read_text() == "second text"
    assert note.stat().st_mode & 0o777 == 0o640  # its mode kept
    assert sorted(p.name for p in docs.iterdir() if p.name.startswith(".")) == []


def test_multiple_files_cancel_and_no_mounting(page: Page, docs: Path, answers: list):
    for name in ("m1.txt", "m2.txt"):
        (docs / name).write_text(name)
    answers.append([docs / "m1.txt", docs / "m2.txt"])
    assert page.evaluate("""(async () => {
        const grants = await wvwasi.dialog.openFile({multiple: true});
        return Promise.all(grants.map((g) => g.text()));
    })()""") == ["m1.txt", "m2.txt"]
    answers.append(None)
    assert refusal(page, "wvwasi.dialog.openFile()") == "cancelled"
    answers.append([docs / "m1.txt"])
    # a file grant is not a folder: it cannot be mounted into a service
    assert refusal(page, """wvwasi.dialog.openFile().then((g) =>
        WasiWorker.run('nothing', {grants: [{grant: g, guest: '/x'}]}))""") in (
        "permission", "lookup")
    assert refusal(page, "wvwasi.dialog.openFile({mode: 'rwx'})") == "TypeError: " \
        "wvwasi.dialog.openFile(): mode must be 'ro' or 'rw', got \"rwx\""


def test_save_file_creates_the_file_whole(page: Page, docs: Path, answers: list,
                                          requests: list[FileRequest]):
    target = docs / "new" / "saved.note"
    target.parent.mkdir()
    answers.append([target])
    page.evaluate("""(async () => {
        const g = await wvwasi.dialog.saveFile({suggestedName: 'saved.note', accept: ['note']});
        if (g.mode !== 'rw') throw new Error(g.mode);
        await g.write(new Blob(['saved ', 'text']));
    })()""")
    assert requests[-1] == FileRequest("save", ("note",), False, "saved.note")
    assert target.read_text() == "saved text"
    assert target.stat().st_mode & 0o777 == 0o644
    assert os.listdir(target.parent) == ["saved.note"]  # no temporary file left
    answers.append([docs / "no-such-folder" / "x.note"])
    assert refusal(page, "wvwasi.dialog.saveFile()") == "start"


def test_a_launched_document_arrives_as_a_grant(page: Page, docs: Path):
    (docs / "launched.note").write_text("launched text")
    result = page.evaluate("""new Promise((resolve, reject) => {
        setTimeout(() => reject(new Error('no open event within 20 s')), 20000);
        wvwasi.app.addEventListener('open', async ({detail}) => {
            const [good, bad] = detail.files;
            try {
                resolve([good.name, good.grant.mode, await good.grant.text(), bad.grant]);
            } catch (e) {
                reject(e);
            }
        });
        __wvwasiDispatch('open', {files: [
            {path: '/x/launched.note', name: 'launched.note', mode: 'rw', token: 'tok-editor'},
            {path: '/etc/passwd', name: 'passwd', mode: 'rw', token: 'forged'}],
            urls: [], args: [], cwd: '/'});
    })""")
    assert result == ["launched.note", "rw", "launched text", None]


def test_window_calls_without_an_app_window_are_unavailable(page: Page):
    assert refusal(page, "wvwasi.window.setTitle('x')") == "unavailable"
    assert page.evaluate("Object.isFrozen(wvwasi.window)") is True


#: Picks a document (read-write), then cancels, then saves; hands the document's bytes to a
#: service as a file and tries to mount its grant; the same on the desktop and the web.
AGREE = """async () => {
    const outcome = (promise) => promise.then(() => 'ok', (e) => e.kind ?? String(e));
    const doc = await wvwasi.dialog.openFile({accept: ['.note'], mode: 'rw'});
    const bytes = await doc.read();
    const run = await WasiWorker.run('readfile', {args: ['/in/doc.note'],
                                                  files: {'/in/doc.note': bytes}});
    const result = {
        name: doc.name, mode: doc.mode, own: Object.keys(doc), isGrant: doc instanceof FileGrant,
        frozen: Object.isFrozen(doc), bytes: [...bytes], stdout: run.stdout, exit: run.exitCode,
        mounted: await outcome(WasiWorker.run('readfile', {args: ['/x'],
                                                           grants: [{grant: doc, guest: '/x'}]})),
        copied: await outcome(new FileGrant(doc.id, 'other', 'ro').read()),  // the id counts
        forged: await outcome(new FileGrant('web-1x', doc.name, 'rw').read()),
        cancelled: await outcome(wvwasi.dialog.openFile()),
    };
    await doc.write(new TextEncoder().encode(run.stdout.toUpperCase()));
    const saved = await wvwasi.dialog.saveFile({suggestedName: 'out.note', accept: ['note']});
    await saved.write(new Blob(['saved ', doc.name]));
    result.saved = [saved.name, saved.mode];
    return result;
}"""

#: The web page's File System Access pickers, stood in for: each answers with a real handle of
#: the origin private file system (the next queued name; null: the user cancelled).
FAKE_PICKERS = """(content) => {
    const files = navigator.storage.getDirectory();
    const handle = async (name) => (await files).getFileHandle(name, {create: true});
    const next = [];
    window.pickerOptions = [];
    const queue = async (name, text) => {
        const writable = await (await handle(name)).createWritable();
        await writable.write(text);
        await writable.close();
        next.push(name);
    };
    window.showOpenFilePicker = async (options) => {
        window.pickerOptions.push(options);
        const name = next.shift();
        if (!name) throw new DOMException('The user aborted a request.', 'AbortError');
        return [await handle(name)];
    };
    window.showSaveFilePicker = async (options) => handle(options.suggestedName);
    window.opfsText = async (name) => (await (await handle(name)).getFile()).text();
    return queue('doc.note', content).then(() => next.push(null));
}"""
CONTENT = "Grüße\nline two"


@pytest.fixture(scope="module")
def site(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    manifest = load_manifest(project, platform=WEB)
    server = SiteServer(write_site(manifest, tmp_path_factory.mktemp("dialogs-web") / "site"))
    try:
        yield server.start()
    finally:
        server.close()


def test_web_and_desktop_dialogs_give_a_service_the_same_file(
    page: Page, browser: Browser, site: str, docs: Path, answers: list
):
    doc = docs / "doc.note"
    doc.write_text(CONTENT)
    out = docs / "out.note"
    answers.extend([[doc], None, [out]])
    desktop: dict[str, Any] = page.evaluate(AGREE)
    context = browser.new_context()
    try:
        web_page = context.new_page()
        web_page.goto(site)
        web_page.evaluate(FAKE_PICKERS, CONTENT)
        web: dict[str, Any] = web_page.evaluate(AGREE)
        written = web_page.evaluate("opfsText('doc.note')")
        saved = web_page.evaluate("opfsText('out.note')")
        options = web_page.evaluate("pickerOptions")
    finally:
        context.close()
    assert web == desktop
    assert desktop["stdout"] == CONTENT and desktop["bytes"] == list(CONTENT.encode())
    assert (desktop["name"], desktop["mode"], desktop["saved"]) == ("doc.note", "rw",
                                                                    ["out.note", "rw"])
    assert desktop["mounted"] == desktop["forged"] == "permission" and desktop["copied"] == "ok"
    assert desktop["cancelled"] == "cancelled"
    assert written == doc.read_text() == CONTENT.upper()
    assert saved == out.read_text() == "saved doc.note"
    # accept=['.note'] became the picker's types; the cancelled pick asked with none
    assert options == [{"multiple": False, "types": [{"description": "Files", "accept": {
        "application/octet-stream": [".note"]}}]}, {"multiple": False, "types": []}]


def test_web_open_falls_back_to_a_file_input_and_the_rest_is_unavailable(
    browser: Browser, site: str, tmp_path: Path
):
    picked = tmp_path / "picked.note"
    picked.write_text("from the input")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site)
        page.evaluate("""() => {
            window.showOpenFilePicker = undefined;  // a browser without File System Access
            const button = document.body.appendChild(document.createElement('button'));
            button.textContent = 'Open';
            button.onclick = () => { window.opened = wvwasi.dialog.openFile({accept: ['.note']})
                .then(async (g) => [g.name, g.mode, await g.text(), (await WasiWorker.run(
                    'readfile', {args: ['/f'], files: {'/f': await g.read()}})).stdout]); };
        }""")
        with page.expect_file_chooser() as chooser:
            page.click("button")
        assert chooser.value.is_multiple() is False
        assert chooser.value.element.get_attribute("accept") == ".note"
        chooser.value.set_files(str(picked))
        assert page.evaluate("opened") == ["picked.note", "ro", "from the input",
                                           "from the input"]
        unavailable = page.evaluate("""async () => {
            window.showDirectoryPicker = undefined;
            const kind = (p) => p.then(() => 'ok', (e) => e.kind ?? String(e));
            return [await kind(wvwasi.dialog.openFile({mode: 'rw'})),
                    await kind(wvwasi.window.resize(100, 100)),
                    await kind(wvwasi.updater.check()), await kind(wvwasi.app.relaunch()),
                    await WasiWorker.requestDirectory().catch((e) => `${e.kind}: ${e.message}`)];
        }""")
    finally:
        context.close()
    assert unavailable == ["unavailable"] * 4 + [
        "unavailable: WasiWorker.requestDirectory() needs a browser with the File System Access "
        "API (showDirectoryPicker: Chromium, Edge); this one cannot open folders of the machine"]


#: A folder for requestDirectory: what `observe mutate` changes (tests/fixtures/c/observe.c).
FOLDER = {"gone.txt": "a\n", "old.txt": "o\n", "keep/edit.txt": "e\n", "keep/same.txt": "same\n",
          "olddir/x.txt": "x\n", "emptied/only.txt": "y\n"}

#: Picks a folder read-write and read-only, has services list it, change it (a dedicated
#: worker) and fail to change it read-only, and tries what must be refused.
GRANTS = """async () => {
    const run = async (service, args, grants) => {
        try {
            const r = await WasiWorker.run(service, {args, grants});
            return {exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr};
        } catch (e) {
            return {kind: e.kind, message: e.message};
        }
    };
    const rw = await WasiWorker.requestDirectory({mode: 'rw'});
    const ro = await WasiWorker.requestDirectory();
    const out = {name: rw.name, modes: [rw.mode, ro.mode], isGrant: ro instanceof DirectoryGrant};
    out.before = await run('tree', ['tree', '/picked'], [rw]);
    out.readOnly = await run('tree', ['mutate', '/in'], [{grant: ro, guest: '/in'}]);
    out.widened = await run('tree', ['tree', '/in'], [{grant: ro, guest: '/in', mode: 'rw'}]);
    out.notAccepted = await run('readfile', ['/picked/old.txt'], [rw]);
    out.shadowed = [
        await WasiWorker.run('tree', {grants: [rw], files: {'/picked/a': 'x'}}).catch(String),
        await WasiWorker.run('tree', {grants: [rw, {grant: ro, guest: '/picked//sub/'}]})
            .catch(String)];
    out.mutate = await new Promise((resolve) => {
        const w = new WasiWorker('tree_live', {args: ['mutate', '/work/d'],
                                               grants: [{grant: rw, guest: '/work/./d'}]});
        const messages = [];
        w.onmessage = (e) => messages.push(e.data);
        w.onexit = (e) => resolve({code: e.code, error: e.error?.message ?? null, messages});
    });
    out.after = await run('tree', ['tree', '/picked'], [ro]);
    out.cancelled = await WasiWorker.requestDirectory().then(() => 'ok', (e) => e.kind);
    return out;
}"""

#: The browser's folder picker stood in for: it answers with a real handle of the origin private
#: file system, a folder `name` filled with `files`, twice, then as if the user cancelled.
FAKE_FOLDER_PICKER = """async ([name, files]) => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(name, {create: true});
    for (const [path, text] of Object.entries(files)) {
        const parts = path.split('/');
        let d = dir;
        for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p, {create: true});
        const w = await (await d.getFileHandle(parts.at(-1), {create: true})).createWritable();
        await w.write(text);
        await w.close();
    }
    window.folderOptions = [];
    window.showDirectoryPicker = async (options) => {
        window.folderOptions.push(options);
        if (window.folderOptions.length > 2) {
            throw new DOMException('The user aborted a request.', 'AbortError');
        }
        return dir;
    };
    window.folderTree = async (d = dir, prefix = '') => {
        const out = {};
        for await (const [n, h] of d.entries()) {
            if (h.kind === 'directory') Object.assign(out, await folderTree(h, `${prefix}${n}/`));
            else out[prefix + n] = await (await h.getFile()).text();
            if (h.kind === 'directory') out[`${prefix}${n}/`] = null;
        }
        return out;
    };
}"""


def disk_tree(root: Path) -> dict[str, str | None]:
    """A folder as FAKE_FOLDER_PICKER's folderTree gives it: files' text, folders as None."""
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""):
            None if p.is_dir() else p.read_text() for p in root.rglob("*")}


def fill(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def test_web_and_desktop_give_a_service_the_same_picked_folder(
    page: Page, browser: Browser, site: str, docs: Path, folders: list[Path | None]
):
    picked = docs / "picked"
    fill(picked, FOLDER)
    folders.extend([picked, picked, None])
    desktop: dict[str, Any] = page.evaluate(GRANTS)
    context = browser.new_context()
    try:
        web_page = context.new_page()
        web_page.goto(site)
        web_page.evaluate(FAKE_FOLDER_PICKER, ["picked", FOLDER])
        web: dict[str, Any] = web_page.evaluate(GRANTS)
        web_tree = web_page.evaluate("folderTree()")
        options = web_page.evaluate("folderOptions")
    finally:
        context.close()
    assert web == desktop
    assert desktop["before"]["stdout"].splitlines()[:2] == [
        "/picked/emptied=dir", "/picked/emptied/only.txt=file:2:y|"]
    assert desktop["readOnly"]["stdout"].splitlines()[0] == "create=63"  # EPERM: read-only
    assert desktop["widened"]["kind"] == desktop["notAccepted"]["kind"] == "permission"
    assert desktop["shadowed"] == [
        "WasiError: service 'tree': file /picked/a would shadow the grant /picked",
        "WasiError: service 'tree': grant /picked//sub/ would shadow the grant /picked"]
    assert desktop["mutate"] == {"code": 0, "error": None, "messages": [
        f"{step}=0" for step in ("create", "append", "unlink", "rename", "mkdir", "mkdir2",
                                 "create2", "rename_dir", "unlink2", "rmdir", "replace")]}
    assert desktop["cancelled"] == "cancelled"
    # the same folder left behind: created, changed, deleted and renamed on both
    assert web_tree == disk_tree(picked) == {
        "keep/": None, "keep/edit.txt": "e\nmore\n", "keep/same.txt": "same\n",
        "made/": None, "made/deeper/": None, "made/deeper/f.txt": "deep\n",
        "new.txt": "created\n", "newdir/": None, "newdir/x.txt": "x\n", "renamed.txt": "o\n"}
    assert options == [{"mode": "readwrite"}, {"mode": "read"}, {"mode": "read"}]


def test_web_folder_copies_are_bounded_and_never_half_written(browser: Browser, site: str):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site)
        page.evaluate(FAKE_FOLDER_PICKER, ["bounded", FOLDER])
        result = page.evaluate("""async () => {
            const dir = await WasiWorker.requestDirectory({mode: 'rw'});
            const fail = (service, what) => WasiWorker.run(service, {args: [what, '/d'],
                grants: [{grant: dir, guest: '/d'}]}).then((r) => r.stdout,
                (e) => [e.kind, e.message, e.stdout ?? null]);
            return [await fail('few', 'tree'), await fail('small', 'mutate')];
        }""")
        left = page.evaluate("folderTree()")
    finally:
        context.close()
    few, small = result
    assert few == ["start", "service 'few': the folder 'bounded' granted at /d has more than 8 "
                   "entries (on the web a service works on a copy of a picked folder, within "
                   "its limits.files and limits.files_size; docs/web.md)", None]
    # 15 bytes fit at the start; the 29 the service left do not: nothing is written back
    assert small[:2] == ["output", "service 'small' left more than 20 bytes "
                         "(services.small.limits.files_size) in the folder 'bounded' granted "
                         "at /d: nothing of it was written back (docs/web.md)"]
    assert small[2].startswith("create=0\n")  # it ran and changed its copy
    assert left == {**FOLDER, "keep/": None, "olddir/": None, "emptied/": None}


def test_web_folder_copies_are_written_back_after_a_trap_not_after_terminate_or_a_link(
    browser: Browser, site: str
):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site)
        page.evaluate(FAKE_FOLDER_PICKER, ["ended", FOLDER])
        stopped = page.evaluate("""async () => {
            const dir = await WasiWorker.requestDirectory({mode: 'rw'});
            const w = new WasiWorker('tree_live', {args: ['mutate', '/d', 'wait'],
                                                   grants: [{grant: dir, guest: '/d'}]});
            const ended = new Promise((resolve) => { w.onexit = (e) => resolve(e.error.kind); });
            await new Promise((resolve) => {
                w.onmessage = (e) => e.data === 'replace=0' && resolve();
            });
            w.terminate();
            return [await ended, await folderTree()];
        }""")
        assert stopped == ["terminated", {**FOLDER, "keep/": None, "olddir/": None,
                                          "emptied/": None}]
        linked = page.evaluate("""async () => {
            const dir = await WasiWorker.requestDirectory({mode: 'rw'});
            const e = await WasiWorker.run('tree', {args: ['mutate', '/d', 'link'],
                grants: [{grant: dir, guest: '/d'}]}).catch((e) => e);
            return [e.kind, e.message, e.stdout.split('\\n').at(-2), await folderTree()];
        }""")
        assert linked == ["output", "service 'tree' made a symlink (link) in the folder "
                          "'ended' granted at /d, and a browser's folder holds none: nothing of "
                          "it was written back (docs/web.md)", "symlink=0",
                          {**FOLDER, "keep/": None, "olddir/": None, "emptied/": None}]
        page.evaluate(FAKE_FOLDER_PICKER, ["ended", {}])  # two more picks of the same folder
        trapped = page.evaluate("""async () => {
            const dir = await WasiWorker.requestDirectory({mode: 'rw'});
            const kind = await WasiWorker.run('tree', {args: ['mutate', '/d', 'trap'],
                grants: [{grant: dir, guest: '/d'}]}).then(() => 'ok', (e) => e.kind);
            return [kind, Object.keys(await folderTree()).sort()];
        }""")
    finally:
        context.close()
    assert trapped == ["trap", ["keep/", "keep/edit.txt", "keep/same.txt", "made/",
                                "made/deeper/", "made/deeper/f.txt", "new.txt", "newdir/",
                                "newdir/x.txt", "renamed.txt"]]


#: What wvwasi.window.open is given: pages of the app, and what is not one.
PAGE_NAMES = ["second.html", "tools/", "tools/index.html", "tools", "https://example.com/",
              "../wvwasi.toml", "missing.html", "app.js", "/second.html", ".hidden.html",
              "tools/../second.html", "second.html?x=1", "second.html#top", "",
              "__wvwasi/wvwasi.js"]


def test_web_window_open_checks_pages_as_the_desktop_and_close_closes_what_it_opened(
    browser: Browser, site: str, app: ServedApp
):
    # the desktop's check of a page name (runtime/bridge/static.py), run directly: opening a
    # real second window is tests/test_desktop_window.py's
    files = UIFiles(app.manifest.ui.dir, "index.html")

    def desktop(name: str) -> list[str]:
        try:
            files.page(name)
        except ValueError as e:
            return ["permission", f"wvwasi.window.open(): {e}"]
        return ["ok"]

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site + "index.html")
        page.goto(site)  # two entries of history: a window the user opened, not a script
        outcomes = page.evaluate("""async (names) => {
            const out = [];
            for (const name of names) {
                out.push(await wvwasi.window.open(name).then(() => ['ok'],
                                                             (e) => [e.kind, e.message]));
            }
            return out;
        }""", PAGE_NAMES)
        assert outcomes == [desktop(name) for name in PAGE_NAMES]
        assert outcomes.count(["ok"]) == 4
        assert page.evaluate("""async () => {
            const kind = (p) => p.then(() => 'ok', (e) => [e.kind, e.message]);
            return [await kind(wvwasi.window.open('second.html', {width: 0})),
                    await kind(wvwasi.window.open('second.html', {depth: 1}))];
        }""") == [["invalid", "wvwasi.window.open(): options are {title: a string of at most "
                   "1024 characters, width and height: 1 to 16384}"],
                  ["invalid", "wvwasi.window.open(): options are {title: a string of at most "
                   "1024 characters, width and height: 1 to 16384} (unknown: ['depth'])"]]
        with context.expect_page() as popup:
            page.evaluate("wvwasi.window.open('second.html', {title: 'Second', width: 320})")
        second = popup.value
        second.wait_for_load_state()
        second.wait_for_function("document.title === 'Second'")
        # [window] height is the default; the title replaced the page's own
        assert second.evaluate("[location.pathname, innerWidth, outerHeight >= 400]") == [
            "/second.html", 320, True]
        # 5 of 8 second windows are open: 3 more, then the limit
        assert page.evaluate("""async () => {
            const out = [];
            for (let i = 0; i < 4; i++) {
                out.push(await wvwasi.window.open('second.html').then(() => 'ok', (e) => e.kind));
            }
            return out;
        }""") == ["ok", "ok", "ok", "limit"]
        # a window a script opened closes; the one the user opened cannot be closed by the page
        with second.expect_event("close"):
            second.evaluate("wvwasi.window.close()")
        assert page.evaluate("wvwasi.window.open('second.html').then(() => 'ok')") == "ok"
        assert page.evaluate("wvwasi.window.close().then(() => 'ok', (e) => [e.kind, "
                             "e.message])") == ["unavailable", "wvwasi.window.close(): the "
                             "browser lets a page close only a window that "
                             "wvwasi.window.open() (or another script) opened"]
        assert page.evaluate("wvwasi.window.resize(10, 10).then(() => 'ok', (e) => e.kind)") \
            == "unavailable"
    finally:
        context.close()


#: A page-supplied module (observe.wasm of the app's UI) lent a picked folder, read-write then
#: read-only: on the desktop the app relays its calls to the folder, on the web it gets a copy.
PAGE_MODULE_GRANTS = """async () => {
    const dir = await WasiWorker.requestDirectory({mode: 'rw'});
    const run = (args, mode) => WasiWorker.run('observe.wasm', {args,
        grants: [{grant: dir, guest: '/d', mode}]}).then((r) => [r.exitCode, r.stdout, r.stderr],
                                                          (e) => [e.kind, e.message]);
    return [await run(['mutate', '/d']), await run(['tree', '/d'], 'ro'),
            await run(['mutate', '/d'], 'ro')];
}"""


def test_a_page_supplied_module_gets_the_same_picked_folder_on_the_web(
    page: Page, browser: Browser, site: str, docs: Path, folders: list[Path | None]
):
    lent = docs / "lent"
    fill(lent, FOLDER)
    folders.append(lent)
    desktop = page.evaluate(PAGE_MODULE_GRANTS)
    context = browser.new_context()
    try:
        web_page = context.new_page()
        web_page.goto(site)
        web_page.evaluate(FAKE_FOLDER_PICKER, ["lent", FOLDER])
        web = web_page.evaluate(PAGE_MODULE_GRANTS)
        web_tree = web_page.evaluate("folderTree()")
    finally:
        context.close()
    assert web[:2] == desktop[:2]
    assert desktop[0][0] == 0 and desktop[1][1].splitlines()[0] == "/d/keep=dir"
    assert web_tree == disk_tree(lent) and "renamed.txt" in web_tree
    # Read-only, every change fails with EPERM on the web as for services under wasmtime; the
    # app's relay (runtime/bridge/hostfs.py) answers removing or renaming what is no longer
    # there with ENOENT first, so that step is compared with the services' answer instead.
    assert web[2] == [0, "".join(f"{step}=63\n" for step in (
        "create", "append", "unlink", "rename", "mkdir", "mkdir2", "create2", "rename_dir",
        "unlink2", "rmdir", "replace")), ""]
