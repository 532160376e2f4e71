"""What the Linux packages share: the installed file tree, the .desktop entry, backend depends."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from PIL import Image

from wvwasi.packager import icons
from wvwasi.packager.caches import cached_blob
from wvwasi.packager.formats._archive import normalize_tree
from wvwasi.packager.stage import StagedApp
from wvwasi.templates import ROOT as TEMPLATES

#: System packages each webview backend loads at run time (never bundled), per package system.
WEBVIEW_DEPENDS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "deb": {
        "gtk": ("gir1.2-webkit2-4.1", "gir1.2-gtk-3.0", "libgirepository-1.0-1"),
        "qt": ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0",
               "libnss3", "libegl1", "libfontconfig1"),
    },
    "rpm": {
        "gtk": ("webkit2gtk4.1", "gtk3", "gobject-introspection"),
        "qt": ("xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms", "libxkbcommon-x11", "nss"),
    },
})

#: What WebKitGTK plays `<audio>`/`<video>` with (GStreamer; Qt WebEngine brings its own
#: decoders): required, the base and good plugin sets (playbin, WAV/Ogg/FLAC/WebM demuxers and
#: decoders, audio sinks); recommended, what more formats and video need (plugins-bad:
#: fakevideosink, WebVTT; libav: MP3/AAC/H.264; gl: video rendering). Debian 12 / Fedora names.
MEDIA_DEPENDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "deb": ("gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good"),
    "rpm": ("gstreamer1-plugins-base", "gstreamer1-plugins-good"),
})
MEDIA_RECOMMENDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "deb": ("gstreamer1.0-plugins-bad", "gstreamer1.0-libav", "gstreamer1.0-gl"),
    "rpm": ("gstreamer1-plugins-bad-free", "gstreamer1-plugin-libav"),
})


def install_prefix(app: StagedApp) -> str:
    """Where packages install the app folder."""
    return f"/opt/{app.slug}"


def desktop_entry(app: StagedApp, exec_path: str, icon: str) -> str:
    """The freedesktop .desktop file text."""
    def clean(text: str) -> str:
        return " ".join(text.split()).replace("\\", "\\\\")

    template = string.Template((TEMPLATES / "app.desktop").read_text(encoding="utf-8"))
    return template.substitute(
        name=clean(app.name),
        comment=clean(app.manifest.app.description or app.name),
        exec=exec_path,
        icon=icon,
        category=app.manifest.bundle.linux.category,
    )


def install_tree(app: StagedApp, root: Path, mtime: int | None) -> list[str]:
    """Lay out under `root` (as if it were `/`) what a package installs besides the app folder
    /opt/<slug> (which packages take straight from the staged app): /usr/bin/<slug> ->
    /opt/<slug>/<slug>, /usr/share/applications/<identifier>.desktop,
    /usr/share/icons/hicolor/*/apps/<identifier>.png; normal modes and, if set, mtime `mtime`.

    Returns the installed paths that are not folders shared with other packages, /opt/<slug>
    included (what the package owns).
    """
    prefix = install_prefix(app)
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / app.slug).symlink_to(f"{prefix}/{app.executable.name}")
    share = root / "usr" / "share"
    ident = app.manifest.app.identifier
    desktop = share / "applications" / f"{ident}.desktop"
    desktop.parent.mkdir(parents=True)
    desktop.write_text(desktop_entry(app, f"/usr/bin/{app.slug}", ident), encoding="utf-8")
    icon_files = hicolor_icons(app, share, ident)
    normalize_tree(root, mtime)
    owned = [prefix, f"/usr/bin/{app.slug}", f"/usr/share/applications/{ident}.desktop"]
    owned += ["/" + p.relative_to(root).as_posix() for p in icon_files]
    return owned


def hicolor_icons(app: StagedApp, share: Path, ident: str) -> list[Path]:
    """`icons.write_hicolor`'s files, each size rendered once per icon (cached by the icon's
    SHA-256: resizing and optimizing eight PNGs is most of a rebuild's icon work)."""
    digest = hashlib.sha256(app.icon.read_bytes()).hexdigest()
    master: list[Image.Image] = []
    files = []
    for size in icons.HICOLOR_SIZES:
        out = share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ident}.png"
        out.parent.mkdir(parents=True, exist_ok=True)

        def render(size: int = size, out: Path = out) -> bytes:
            if not master:
                master.append(icons.load_icon(app.icon))
            return icons.write_png(master[0], out, size).read_bytes()

        out.write_bytes(cached_blob(f"icon-{digest}-{size}.png", render))
        files.append(out)
    return files


def package_depends(app: StagedApp, system: str) -> tuple[str, ...]:
    """The backend's system packages (with GTK, its media plugins), plus
    `[bundle.linux] depends` for deb."""
    extra = app.manifest.bundle.linux.depends if system == "deb" else ()
    media = MEDIA_DEPENDS[system] if app.manifest.webview == "gtk" else ()
    return tuple(dict.fromkeys((*WEBVIEW_DEPENDS[system][app.manifest.webview], *media,
                                *extra)))


def package_recommends(app: StagedApp, system: str) -> tuple[str, ...]:
    """Packages installed along by default (apt, dnf) but not required: the GTK backend's
    further media plugins."""
    return MEDIA_RECOMMENDS[system] if app.manifest.webview == "gtk" else ()


def installed_size_kib(*roots: Path) -> int:
    """Disk usage of the trees in KiB (for the deb Installed-Size field)."""
    total = sum(p.lstat().st_size for r in roots for p in r.rglob("*") if not p.is_dir())
    return (total + 1023) // 1024
