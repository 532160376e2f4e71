"""Large records through the bridge in the real app window (GTK/WebKitGTK and Qt WebEngine).

One `frames` worker gets 1 MiB and 16 MiB records (16 MiB is the default `limits.message`, and
both are over the bridge's 1 MiB credit window) posted all at once between small ones; one
`lines` worker gets 1 MiB strings between short ones. Every echo must come back whole, in the
order sent. tests/bulk_driver.py runs the app; tests/bulk_page/bulk.js checks in the page. Then
the page, which started without a menu, sets one (`wvwasi.window.setMenu`) and both backends show
it; on Qt the app's tray icon in a real system tray (trayer) is clicked, and its menu's item (GTK's
tray: tests/test_desktop_window.py).
The figures for such records are bench/bench_window.py's and bench/bench_bulk_candidates.py's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from projects import write_project
from test_desktop_window import system_tray
from test_window import BACKENDS, app_env, assert_clean_exit
from wasm import SOURCE_DIR, build_fixtures
from xvfb import xvfb

HERE = Path(__file__).parent
DRIVER = HERE / "bulk_driver.py"
PAGE = HERE / "bulk_page"
MIB = 1 << 20


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb() as d:
        yield d


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wasm = build_fixtures([SOURCE_DIR / f"{name}.c" for name in ("echo_lines", "echo_frames")])
    root = write_project(tmp_path_factory.mktemp("bulk") / "app", {
        "echo": {"source": "echo_lines", "kind": "dedicated"},
        "frames": {"source": "echo_frames", "kind": "dedicated", "ipc": "frames"},
    }, resolve_wasm=wasm.__getitem__, app={
        "tray": True, "tray_menu": [{"label": "Tray item (1)", "id": "tray-item"}]})
    shutil.copytree(PAGE, root / "ui", dirs_exist_ok=True)
    return root


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_records_echo_whole_and_in_order(
    backend: str, project: Path, display: str, tmp_path: Path
) -> None:
    set_menu = ("wvwasi.window.setMenu([{label: 'Set', items: [{label: 'By the page', id: 'p'}]}])"
                ".then(() => 'set', (e) => e.kind)")
    collect = "globalThis.trays = [], wvwasi.app.addEventListener('tray', (e) => " \
              "trays.push(e.detail)), "
    with system_tray(display):
        proc = subprocess.run(
            [sys.executable, str(DRIVER), str(project), backend,
             f"({collect}bulkCheck().then(async (value) => "
             f"({{...value, menu: await {set_menu}}})))",
             "--menu-labels", *(["--tray"] if backend == "qt" else [])],
            env=app_env(display, tmp_path), capture_output=True, text=True, timeout=300,
        )
    assert_clean_exit(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == 0 and result["threads_left"] == []
    value = result["value"]
    assert 16 * MIB in value["sizes"] and MIB in value["sizes"]
    assert value["frames"] == {"count": len(value["sizes"]), "problems": []}
    assert value["lines"] == {"count": 5, "problems": []}
    # a menu bar appears where there was none
    assert value["menu"] == "set" and "By the page" in result["menu_labels"]
    if backend == "qt":  # the icon itself, then its menu's item
        assert result["trays"] == [{"id": None}, {"id": "tray-item"}]
