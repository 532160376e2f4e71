"""Windows path names checked as plain text, before anything is opened (plain Python: the rules
run and are tested on every OS).

A relative path a service or a page-supplied module gives is split into names that are each
opened beneath the previous folder's handle (runtime/host/winfs.py); these rules refuse what
Windows would read as something other than one plain name in that folder:

- absolute, drive and UNC forms: `/x`, `\\x`, `C:\\x`, `C:x`, `\\\\?\\C:\\x`, `\\\\server\\share`;
- `..` past the start (either separator; `a\\..\\b` is `a/../b`);
- alternate data streams and drive letters (`name:stream`, any `:`);
- device names, with or without an extension (`CON`, `nul`, `COM1`, `con.txt`, `LPT¹`);
- names ending in a dot or a space (Windows drops them: `a.txt.` would open `a.txt`);
- the characters Windows forbids in names (`<>"|?*`, control characters).

What text cannot show (8.3 short names aliasing a long one, links and junctions, case) is
checked on the opened handles (winfs.py).
"""

from __future__ import annotations

import errno

from .hostpath import EscapeError

_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{d}{n}" for d in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"})
_FORBIDDEN = frozenset('<>:"|?*') | frozenset(chr(c) for c in range(32))


def name_problem(name: str) -> str | None:
    """Why one path name may not be opened on Windows, or None if it may."""
    if ":" in name:
        return "a ':' (an alternate data stream or a drive)"
    if any(c in _FORBIDDEN for c in name):
        return "a character Windows forbids in names"
    if name.endswith((".", " ")):
        return "a trailing dot or space (Windows would drop it)"
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    if stem in _DEVICES:
        return f"the device name {stem}"
    return None


def split(rel: str) -> list[str]:
    """The names of relative path `rel` (`/` or `\\` separated), `.` left out and `..` applied;
    EscapeError (EPERM) for a path that is absolute, leads out, or holds a name Windows reads
    as something else."""
    if rel.startswith(("/", "\\")) or (len(rel) >= 2 and rel[1] == ":"):
        raise EscapeError(errno.EPERM, "an absolute, drive or UNC path", rel)
    names: list[str] = []
    for name in rel.replace("\\", "/").split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not names:
                raise EscapeError(errno.EXDEV, "leads out of its folder (..)", rel)
            names.pop()
            continue
        problem = name_problem(name)
        if problem is not None:
            raise EscapeError(errno.EPERM, f"a name with {problem}", rel)
        names.append(name)
    return names
