"""`wvwasi.dialog.openFile/saveFile` and launched documents as FileGrants, in headless Chromium
against a real bridge; the native dialog is a callback (as `requestDirectory`'s picker is in
test_page_api.py), answering with what the test queued."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import ServedApp, chromium, served_app
from playwright.sync_api import Browser, Page
from projects import write_project

from wvwasi.runtime.bridge.grants import FileRequest

PAGE = "<!doctype html><title>dialogs</title><p>dialogs</p>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def answers() -> list[list[Path] | None]:
    """What the fake file dialog answers next (None: the user cancelled)."""
    return []


@pytest.fixture(scope="module")
def requests() -> list[FileRequest]:
    return []


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, module_cache_dir: Path, docs: Path,
        answers: list[list[Path] | None], requests: list[FileRequest]) -> Iterator[ServedApp]:
    base = tmp_path_factory.mktemp("dialogs")
    root = write_project(base / "app", {}, resolve_wasm=lambda name: Path(name), html=PAGE)

    def file_picker(request: FileRequest) -> list[Path] | None:
        requests.append(request)
        return answers.pop(0)

    launched = {"tok-editor": (docs / "launched.note", "rw")}
    with served_app(root, dirs=base / "dirs", cache=module_cache_dir, copy_pages=False,
                    file_picker=file_picker, launched=launched.get) as served:
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
