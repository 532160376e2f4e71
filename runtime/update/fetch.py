"""HTTP for the updater: latest.json and the artefact, each with bounds on size and time.

Only https URLs are followed (also through redirects), or http to a loopback address (local
mirrors, tests): an update's signature protects its content, but not which release a network
attacker could make an app see or how long it waits (docs/security.md).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: latest.json is read up to this many bytes (Tauri's is a few KB).
MAX_LATEST_JSON = 1 << 20
#: Waiting for a server's answer or for the next bytes of one (seconds).
STALL_TIMEOUT = 30.0
#: latest.json as a whole (seconds).
LATEST_JSON_TIMEOUT = 60.0
#: The artefact as a whole: at most this many bytes, within this many seconds.
MAX_DOWNLOAD = 2 << 30
DOWNLOAD_TIMEOUT = 3600.0
_CHUNK = 1 << 16

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class FetchError(Exception):
    """A failed request; `str()` is one line naming the URL."""


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """FetchError unless `url` is https, or http to a loopback address."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise FetchError(f"not a URL: {url!r}") from None
    if not host or not (parts.scheme == "https" or (parts.scheme == "http"
                                                    and is_loopback(host))):
        raise FetchError(f"refused {url}: only https:// URLs (http only to a loopback "
                         "address) are used for updates")


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_Redirects())


def _open(url: str, user_agent: str) -> Any:
    check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": user_agent,
                                                  "Accept": "application/json, */*"})
    try:
        return _OPENER.open(request, timeout=STALL_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: the server answered {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise FetchError(f"{url}: cannot connect: {e.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise FetchError(f"{url}: {e}") from None


def fetch_json(url: str, user_agent: str) -> dict[str, Any] | None:
    """The JSON object at `url`; None for 204 No Content (Tauri's "no update")."""
    deadline = time.monotonic() + LATEST_JSON_TIMEOUT
    with _open(url, user_agent) as response:
        if response.status == 204:
            return None
        data = bytearray()
        try:
            while chunk := response.read(_CHUNK):
                data += chunk
                if len(data) > MAX_LATEST_JSON:
                    raise FetchError(f"{url}: larger than {MAX_LATEST_JSON >> 20} MiB: not an "
                                     "update manifest")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: took longer than {LATEST_JSON_TIMEOUT:.0f} s")
        except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets
            raise FetchError(f"{url}: the download broke off: {e}") from None
    try:
        value = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FetchError(f"{url}: not JSON (expected Tauri's latest.json)") from None
    if not isinstance(value, dict):
        raise FetchError(f"{url}: expected a JSON object (Tauri's latest.json)")
    return value


def download(url: str, dest: Path, user_agent: str, progress: Progress | None = None, *,
             max_bytes: int = MAX_DOWNLOAD, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Write the body at `url` into `dest` (a new file); FetchError on a short, oversized or
    slow download (`dest` is then removed)."""
    deadline = time.monotonic() + timeout
    done = 0
    f = open(dest, "xb")  # noqa: SIM115 - closed below; a file already there is not ours
    try:
        with f, _open(url, user_agent) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise FetchError(f"{url}: {total:,} bytes, more than the {max_bytes:,} an "
                                 "update may be")
            if progress:
                progress(0, total)
            while chunk := response.read(_CHUNK):
                done += len(chunk)
                if done > max_bytes:
                    raise FetchError(f"{url}: more than the {max_bytes:,} bytes an update may be")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: took longer than {timeout:.0f} s")
                f.write(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise FetchError(f"{url}: the download broke off after {done:,} of {total:,} "
                                 "bytes")
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, IncompleteRead
        dest.unlink(missing_ok=True)
        raise FetchError(f"{url}: the download broke off after {done:,} bytes: {e}") from None
    return dest
