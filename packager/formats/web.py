"""`web`: the app as a static site (UI, services, the browser engine; docs/web.md).

The pipeline stages the site with `packager.web.write_site` instead of freezing a runtime; this
copies it to `<slug>-<version>-web/`, ready to upload to any static host.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from wvwasi.packager.formats import FormatOptions
from wvwasi.packager.stage import StagedApp

TOOLS: tuple[str, ...] = ()


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    dest = out / f"{app.slug}-{app.version}-web"
    shutil.copytree(app.root, dest)
    return [dest]
