"""What every backend's tray icon holds: its title, icon file, menu and click handler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wvwasi.runtime.manifest import MenuItem


@dataclass(eq=False)
class TrayIcon:
    """A tray icon's state; each backend's `Tray` subclasses it and shows the icon in
    `__post_init__`. `on_click(id)` is called on a thread of its own with a menu item's id, or
    None when the icon itself is clicked."""

    title: str
    icon_file: Path | None
    items: tuple[MenuItem, ...]
    on_click: Callable[[str | None], None]

    def __post_init__(self) -> None:
        """Show the icon: each backend's own (the dataclass's `__init__` calls it)."""

    def _clicked(self, ident: str | None) -> None:
        # never on the GUI thread: the page's event is delivered through it
        threading.Thread(target=self.on_click, args=(ident,), name="wvwasi-tray",
                         daemon=True).start()
