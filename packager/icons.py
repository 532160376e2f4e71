"""App icons from one PNG: Windows .ico, macOS .icns and the freedesktop hicolor sizes (Pillow).

A non-square PNG is centred on a transparent square; a small one is scaled up. An app without
`[app] icon` gets the default icon shipped in templates/.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from wvwasi.packager.tools import BuildError
from wvwasi.templates import ROOT as TEMPLATES

DEFAULT_ICON = TEMPLATES / "icon.png"
#: Sizes installed under share/icons/hicolor/<n>x<n>/apps/.
HICOLOR_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
MASTER_SIZE = 1024


def load_icon(path: Path | None) -> Image.Image:
    """The icon at `path` (default icon for None) as a square RGBA image of MASTER_SIZE."""
    path = DEFAULT_ICON if path is None else Path(path)
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise BuildError("icon", f"{path}: expected a PNG image, got {im.format}")
            image = im.convert("RGBA")
    except FileNotFoundError:
        raise BuildError("icon", f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise BuildError("icon", f"{path}: not a readable PNG image ({e})") from None
    side = max(image.size)
    if image.width != image.height:
        square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        image = square
    if side != MASTER_SIZE:
        image = image.resize((MASTER_SIZE, MASTER_SIZE), Image.Resampling.LANCZOS)
    return image


def write_png(image: Image.Image, out: Path, size: int) -> Path:
    """`image` scaled to `size` x `size` as a PNG at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    image.resize((size, size), Image.Resampling.LANCZOS).save(out, format="PNG", optimize=True)
    return out


def write_ico(image: Image.Image, out: Path) -> Path:
    """A multi-size Windows .ico."""
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    return out


def write_icns(image: Image.Image, out: Path) -> Path:
    """A macOS .icns (16 to 1024 pixels)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="ICNS")
    return out


def write_hicolor(image: Image.Image, share: Path, name: str) -> list[Path]:
    """`share/icons/hicolor/<n>x<n>/apps/<name>.png` for each of HICOLOR_SIZES."""
    return [
        write_png(image, share / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{name}.png", n)
        for n in HICOLOR_SIZES
    ]
