"""Real headless Chromium for page tests, and apps served by a real bridge to test against.

Chromium is Debian's /usr/bin/chromium driven by Python Playwright (`executable_path`); nothing is
ever downloaded (`playwright install` does not work here and must not run). Playwright gives
every launch a fresh profile. For benchmarks use `chromium_command()` instead: Playwright's
DevTools connection slows WebSockets down several times.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wvwasi.runtime.bridge.grants import FilePicker, Launched
from wvwasi.runtime.bridge.server import Bridge
from wvwasi.runtime.host.service_host import ServiceHost
from wvwasi.runtime.manifest import Manifest, load_manifest
from wvwasi.runtime.paths import PathContext

if TYPE_CHECKING:  # Playwright is imported only where a browser runs: the bridge tests that need
    # none also run under the Windows CPython in Wine (tests/test_windows_pytest.py)
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
PAGES_DIR = Path(__file__).parent / "pages"


def _chromium() -> str:
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    return str(CHROMIUM)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium under Playwright for the block (use one per test module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def site_page(site: Path) -> Iterator[Page]:
    """A headless Chromium page on the static web site in folder `site` (SiteServer)."""
    from wvwasi.packager.web import SiteServer

    server = SiteServer(site)
    try:
        url = server.start()
        with chromium() as browser:
            page = browser.new_page()
            page.goto(url)
            yield page
    finally:
        server.close()


def chromium_command(url: str, user_data_dir: Path) -> list[str]:
    """The command line of a headless Chromium on `url` without Playwright (benchmarks)."""
    return [_chromium(), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}", url]


class SpyHost:
    """The real ServiceHost, recording what the bridge asks of it (spawns, subscriptions)."""

    def __init__(self, host: ServiceHost) -> None:
        self.host = host
        self.calls: list[tuple[str, str]] = []
        self.instances: list[Any] = []

    def spawn(self, name: str, options: Any = None, **kwargs: Any) -> Any:
        self.calls.append(("spawn", name))
        inst = self.host.spawn(name, options, **kwargs)
        self.instances.append(inst)
        return inst

    def subscribe(self, name: str, on_event: Callable[[Any], None]) -> Any:
        self.calls.append(("subscribe", name))
        return self.host.subscribe(name, on_event)

    def run_task(self, name: str, **kwargs: Any) -> Any:
        self.calls.append(("run_task", name))
        return self.host.run_task(name, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.host, attr)


class ServedApp:
    """A project served by a started bridge over a SpyHost."""

    def __init__(self, manifest: Manifest, spy: SpyHost, bridge: Bridge, url: str) -> None:
        self.manifest = manifest
        self.spy = spy
        self.bridge = bridge
        self.first_url = url  # the launch URL bridge.start() returned
        self.origin = bridge.origin

    @property
    def url(self) -> str:
        """A new launch URL (each works once)."""
        return self.bridge.launch_url()

    def open(self, context: BrowserContext) -> Page:
        """A new page in `context`, launched (session cookie set) and on the app's entry."""
        page = context.new_page()
        page.goto(self.url)  # waits for the load event: every script has run
        return page


@contextmanager
def served_app(
    root: Path,
    *,
    dirs: Path,
    cache: Path,
    picker: Callable[[], Path | str | None] | None = None,
    file_picker: FilePicker | None = None,
    launched: Launched | None = None,
    port: int = 0,
    dev: bool = False,
    copy_pages: bool = True,
    resources: Path | None = None,
) -> Iterator[ServedApp]:
    """Serve the project at `root` (tests/pages/ copied into its UI unless `copy_pages` is
    false) with a real host (app folders under `dirs`, compile cache `cache`, `$RESOURCES` as
    a built app's when given) and bridge."""
    manifest = load_manifest(root)
    if copy_pages:
        shutil.copytree(PAGES_DIR, manifest.ui.dir, dirs_exist_ok=True)
    base = {v: dirs / v.lower() for v in ("APPDATA", "DOCUMENTS", "DOWNLOADS", "HOME")}
    paths = PathContext.for_app(manifest, resources=resources,
                                base_dirs={**base, "CACHE": cache})
    host = ServiceHost(manifest, paths=paths, compile_cache=cache)
    host.start()
    spy = SpyHost(host)
    bridge = Bridge(manifest, spy, picker=picker, port=port, dev=dev,  # type: ignore[arg-type]
                    file_picker=file_picker, launched=launched)
    try:
        url = bridge.start()
        yield ServedApp(manifest, spy, bridge, url)
    finally:
        bridge.close()
        host.close()
