"""The 72 wasi-testsuite programs through the browser engine (runtime/js/wasi-*.js), in real
headless Chromium (Playwright) and in WebKitGTK (a real pywebview GTK window under Xvfb).

One page (tests/web/conformance.js) runs every program in its own Web Worker, its `root` tree
fetched from the server into a read-write preopen at `/`, and POSTs the results. Each program is
judged by its spec like tests/test_conformance.py, and the tree it leaves must equal the tree
the same program leaves under native wasmtime.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from browser import chromium
from test_conformance import CASES, Case
from webwasi import Tree, native_tree, page_tree, suite_site, webkit_window

#: The whole suite runs in one page, one program at a time.
SUITE_TIMEOUT = 900.0


def _collect(site: Any, engine: str) -> dict[str, Any]:
    try:
        report = site.results.get(timeout=SUITE_TIMEOUT)
    except queue.Empty:
        raise AssertionError("the page never reported its results") from None
    assert "fatal" not in report, report["fatal"]
    assert report["crossOriginIsolated"] is True, "the page is not cross-origin isolated"
    # the page really ran in the engine under test (WebKitGTK's agent string has no "Chrome")
    assert ("Chrome" in report["userAgent"]) == (engine == "chromium"), report["userAgent"]
    return {r["id"]: r for r in report["results"]}


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Tree | None]:
    work = tmp_path_factory.mktemp("native")
    engine = wasmtime.Engine()
    trees: dict[str, Tree | None] = {}

    def get(case: Case) -> Tree | None:
        if case.id not in trees:
            trees[case.id] = native_tree(case, work, engine)
        return trees[case.id]

    return get


@pytest.fixture(scope="module")
def chromium_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with suite_site(tmp_path_factory.mktemp("chromium")) as site, chromium() as browser:
        page = browser.new_page()
        page.goto(site.origin + "/conformance.html")
        return _collect(site, "chromium")


@pytest.fixture(scope="module")
def webkit_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("webkit")
    with suite_site(work) as site, webkit_window(site.origin + "/conformance.html", work):
        yield _collect(site, "webkitgtk")


def judge(case: Case, result: dict[str, Any], native_files: Tree | None) -> None:
    stdout, stderr = result["stdout"], result["stderr"]
    assert result["exitCode"] == case.exit_code, (result["error"], stdout, stderr)
    if case.stdout is not None:
        assert stdout == case.stdout
    if case.stderr is not None:
        assert stderr == case.stderr
    if case.exit_code == 0:
        assert result["error"] is None
    if native_files is not None:
        assert page_tree(result["files"]) == native_files, "the tree differs from wasmtime's"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_chromium(case: Case, chromium_results: dict[str, Any],
                  native: Callable[[Case], Tree | None]) -> None:
    judge(case, chromium_results[case.id], native(case))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_webkitgtk(case: Case, webkit_results: dict[str, Any],
                   native: Callable[[Case], Tree | None]) -> None:
    judge(case, webkit_results[case.id], native(case))


def test_every_program_ran() -> None:
    assert len(CASES) == 72 and all(Path(c.wasm).is_file() for c in CASES)
