"""Guest paths: the one normalizer behind every check that compares paths a service will see.

A guest's libc treats `//ro`, `/./ro`, `/ro/` and `/ro/../ro` alike, so every comparison of guest
paths (per-spawn `files`, grants, scratch, manifest preopens) first brings them to one spelling:
`normalize("//ro/") == "/ro"`. What cannot be normalized safely is refused with a
`GuestPathError` (a ValueError) instead of guessed at.
"""

from __future__ import annotations

#: The longest component and path a host file system is sure to accept (POSIX NAME_MAX/PATH_MAX).
MAX_COMPONENT = 255
MAX_PATH = 4096


class GuestPathError(ValueError):
    """A guest path that cannot be normalized safely; `str()` says why."""


def normalize(path: str) -> str:
    """The canonical spelling of absolute guest path `path`: no empty, `.` or `..` components,
    no trailing slash (`"/"` stays `"/"`).

    Refused: a non-string, a relative path, NUL, `\\` (a separator on a Windows host), text that
    is not valid UTF-8, a `..` that climbs above `/`, a component over 255 bytes or a path over
    4096 bytes.
    """
    if not isinstance(path, str):
        raise GuestPathError(f"expected a path string, got {type(path).__name__}")
    if "\0" in path:
        raise GuestPathError(f"{path!r} contains a NUL character")
    if not path.startswith("/"):
        raise GuestPathError(f"{path!r} is not absolute (it must start with /)")
    if "\\" in path:
        raise GuestPathError(f"{path!r} contains a backslash")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise GuestPathError(f"{path!r} is not valid UTF-8") from None
    if size > MAX_PATH:
        raise GuestPathError(f"a path of {size} bytes is longer than {MAX_PATH}")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise GuestPathError(f"{path!r} climbs above / with ..")
            parts.pop()
            continue
        if len(part.encode("utf-8")) > MAX_COMPONENT:
            raise GuestPathError(f"{path!r} has a component longer than {MAX_COMPONENT} bytes")
        parts.append(part)
    return "/" + "/".join(parts)


def within(path: str, folder: str) -> bool:
    """True if normalized `path` is normalized `folder` or lies inside it."""
    return path == folder or folder == "/" or path.startswith(folder + "/")


def overlap(a: str, b: str) -> bool:
    """True if one normalized path is, or lies inside, the other."""
    return within(a, b) or within(b, a)
