"""`--self-test`: prove a built app works end to end, from its own page, in a few seconds.

With the page loaded in the real window, a script in the page starts every service through the
page API (`WasiWorker`), as the app's own code would:
- `task`: one `WasiWorker.run()` with empty stdin must complete (any exit code; a trap fails);
- `dedicated` / `background`: `new WasiWorker()` must start and stay up (an early trap or start
  error fails), then `terminate()` must end it.
If the page defines `globalThis.wvwasiSelfTest()`, its result — `{check: {ok, detail}}` — is
added: that is where an app round-trips real messages with its services.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from wvwasi.runtime.manifest import Manifest
from wvwasi.runtime.window import AppWindow

#: Seconds for the page to load (a cold WebKit start on a busy 2-core CI runner has taken over
#: 8 s), and for the checks in the page.
LOAD_TIMEOUT = 30.0
CHECK_TIMEOUT = 8.0

_PAGE_CHECKS = """
(async (services) => {
  const within = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))]);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const results = {};
  await Promise.all(Object.entries(services).map(async ([name, kind]) => {
    try {
      if (kind === 'task') {
        const r = await within(WasiWorker.run(name, {stdin: ''}), 4000, name);
        results[name] = {ok: true, detail: `ran, exit code ${r.exitCode}`};
        return;
      }
      const worker = new WasiWorker(name);
      const ended = new Promise((resolve) => { worker.onexit = resolve; });
      const early = await Promise.race([ended, sleep(300).then(() => null)]);
      if (early) {
        results[name] = early.error
          ? {ok: false, detail: early.error.message}
          : {ok: true, detail: `started and exited with code ${early.code}`};
        return;
      }
      worker.terminate();
      await within(ended, 2000, `${name} terminate()`);
      results[name] = {ok: true, detail: 'started, then terminated'};
    } catch (error) {
      results[name] = {ok: false, detail: String(error?.message ?? error)};
    }
  }));
  let app = null;
  if (typeof globalThis.wvwasiSelfTest === 'function') {
    try {
      app = await within(Promise.resolve(globalThis.wvwasiSelfTest()), 4000, 'wvwasiSelfTest()');
    } catch (error) {
      app = {wvwasiSelfTest: {ok: false, detail: String(error?.message ?? error)}};
    }
  }
  return {services: results, app};
})(%s)
"""


def _checks_ok(checks: Any) -> bool:
    return isinstance(checks, dict) and all(
        isinstance(c, dict) and c.get("ok") is True for c in checks.values()
    )


class SelfTest:
    """Runs the checks once the page has loaded, then closes the window; `report` holds the
    result (call `finish()` after the window has closed and the app has shut down)."""

    def __init__(self, manifest: Manifest, window: AppWindow, started: float) -> None:
        self.manifest = manifest
        self.window = window
        self.started = started
        self.report: dict[str, Any] = {
            "app": manifest.app.name,
            "version": manifest.app.version,
            "backend": window.backend or "default",
            "ok": False,
            "error": None,
        }
        self._thread = threading.Thread(target=self._run, name="wvwasi-self-test", daemon=True)

    def start(self) -> None:
        """Begin (on a thread): wait for the page, check, close the window."""
        self._thread.start()

    def _run(self) -> None:
        try:
            if not self.window.loaded.wait(LOAD_TIMEOUT):
                raise TimeoutError(f"the page did not load within {LOAD_TIMEOUT:g} s")
            self.report["load_seconds"] = round(time.perf_counter() - self.started, 3)
            # System-wide on Linux: a launcher can subtract its own clock to time the launch.
            self.report["loaded_monotonic"] = time.monotonic()
            kinds = {name: s.kind for name, s in self.manifest.services.items()}
            result = self.window.evaluate(_PAGE_CHECKS % json.dumps(kinds), CHECK_TIMEOUT)
            self.report["services"] = result["services"]
            self.report["app_checks"] = result["app"]
            self.report["ok"] = _checks_ok(result["services"]) and (
                result["app"] is None or _checks_ok(result["app"])
            )
        except Exception as e:
            self.report["error"] = f"{type(e).__name__}: {e}"
        finally:
            self.window.close()

    def finish(self, leftover_threads: list[str]) -> dict[str, Any]:
        """The final report: fails if the app left threads running after shutdown."""
        self._thread.join(LOAD_TIMEOUT + CHECK_TIMEOUT)
        self.report["seconds"] = round(time.perf_counter() - self.started, 3)
        self.report["threads_left"] = leftover_threads
        if leftover_threads:
            self.report["ok"] = False
        return self.report


#: How long a dedicated/background service must stay up to count as started (as in the page).
_UP_SECONDS = 0.3


def headless_checks(manifest: Manifest, host: Any, launch_url: str) -> dict[str, Any]:
    """`--self-test=headless`, for machines without a display (CI runners): every service
    started straight through the host, as the page check does through the bridge, and the
    bridge checked as the window would use it (launch URL -> session cookie -> the UI's entry
    page and the page API). {"services": {name: {ok, detail}}, "bridge": {ok, detail}}."""
    services = {name: _check_service(host, name, s.kind)
                for name, s in manifest.services.items()}
    return {"services": services, "bridge": _check_bridge(launch_url)}


def _check_service(host: Any, name: str, kind: str) -> dict[str, Any]:
    from wvwasi.runtime.host.events import Exited

    try:
        if kind == "task":
            result = host.run_task(name, stdin=b"")
            if result.error is not None:
                return {"ok": False, "detail": result.error.message}
            return {"ok": True, "detail": f"ran, exit code {result.exit_code}"}
        events: list[Any] = []
        if kind == "background":
            subscription = host.subscribe(name, events.append)
            time.sleep(_UP_SECONDS)
            subscription.close()
            errors = [e.error for e in events if isinstance(e, Exited) and e.error is not None]
            if errors:
                return {"ok": False, "detail": errors[0].message}
            return {"ok": True, "detail": "subscribed to the running service"}
        instance = host.spawn(name, on_event=events.append)
        time.sleep(_UP_SECONDS)
        early = next((e for e in events if isinstance(e, Exited)), None)
        if early is not None:
            return ({"ok": False, "detail": early.error.message} if early.error
                    else {"ok": True, "detail": f"started and exited with code {early.code}"})
        instance.terminate()
        if instance.wait(2.0) is None:
            return {"ok": False, "detail": "did not end within 2 s of terminate()"}
        return {"ok": True, "detail": "started, then terminated"}
    except Exception as e:
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"}


def _check_bridge(launch_url: str) -> dict[str, Any]:
    import http.cookiejar
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        with opener.open(launch_url, timeout=5) as page:  # redirected to the entry page
            html = page.read()
        origin = launch_url.split("/__wvwasi/")[0]
        with opener.open(f"{origin}/__wvwasi/wvwasi.js", timeout=5) as script:
            api = script.read()
    except OSError as e:
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"}
    if b"/__wvwasi/wvwasi.js" not in html or b"WasiWorker" not in api:
        return {"ok": False, "detail": "the entry page or the page API was not served"}
    return {"ok": True, "detail": f"served the entry page ({len(html)} bytes) and the page API"}
