"""A small GitHub Actions runner for the Linux jobs of the generated release workflow: runs their
`run:` steps verbatim with bash, as an ubuntu runner would, and emulates the actions they use as
documented:

- actions/checkout: a clone of the repository into a fresh workspace;
- actions/setup-python: puts a fresh virtual environment's python and pip first on PATH;
- actions/upload-artifact: @actions/glob patterns in order (a later `!pattern` removes, implicit
  descendants of matched folders, a trailing `/` matches folders only), hidden files left out
  (`include-hidden-files: false`), and the artifact root as upload-artifact computes it: the
  least common ancestor of the search paths (the literal part of each pattern before its first
  wildcard), or a lone file's folder when one file was named;
- actions/download-artifact: `name` into `path` (default: the workspace), `pattern` into
  `path/<artifact name>/` each.

`sudo apt-get install` only checks that the packages are installed (this machine has them; no
network); `gh` is a stand-in that records what would be released.
Only the expressions the workflow uses are understood; anything else fails the test.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

SUDO = """#!/bin/bash
# a runner's passwordless sudo; apt-get only checks that the packages are installed
if [ "$1" = apt-get ]; then
  shift
  [ "$1" = update ] && exit 0
  for p in "$@"; do
    case "$p" in install|-*) continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \\
      || { echo "sudo apt-get: $p is not installed here" >&2; exit 1; }
  done
  exit 0
fi
exec "$@"
"""
GH = """#!/bin/bash
# the GitHub CLI, recording: `release view` finds no release; `upload` copies the files
echo "$*" >> "$GH_LOG"
[ "$1 $2" = "release view" ] && exit 1
if [ "$1 $2" = "release upload" ]; then
  shift 3
  for f in "$@"; do case "$f" in --*) break ;; esac; cp -- "$f" "$GH_RELEASED/"; done
fi
exit 0
"""


class Runner:
    """Runs jobs of one workflow run; artifacts live under `top/artifacts/<name>/`."""

    def __init__(self, top: Path, repo: Path, python_bin: Path, env: dict[str, str],
                 ref: str = "refs/tags/v0.1.0") -> None:
        self.top, self.repo, self.python_bin, self.ref = top, repo, python_bin, ref
        self.artifacts = top / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.released = top / "released"
        self.released.mkdir(exist_ok=True)
        self.gh_log = top / "gh.log"
        shims = top / "shims"
        shims.mkdir(exist_ok=True)
        for name, text in (("sudo", SUDO), ("gh", GH)):
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)
        path = [p for p in os.environ["PATH"].split(os.pathsep) if "/.venv/" not in p + "/"]
        self.base_env = {**env, "PATH": os.pathsep.join([str(shims), *path])}
        self._count = 0

    # -- expressions -----------------------------------------------------------------------------

    def expand(self, text: str, ctx: dict[str, Any]) -> str:
        return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: self._value(m.group(1), ctx), text)

    def _value(self, expr: str, ctx: dict[str, Any]) -> str:
        if m := re.fullmatch(r"matrix\.([\w-]+)", expr):
            return str(ctx["matrix"][m.group(1)])
        if m := re.fullmatch(r"secrets\.(\w+)", expr):
            return ctx["secrets"].get(m.group(1), "")
        if m := re.fullmatch(r"secrets\.(\w+) != ''", expr):
            return "true" if ctx["secrets"].get(m.group(1)) else "false"
        if expr == "github.token":
            return "fake-token"
        raise AssertionError(f"expression not understood by the test runner: {expr}")

    def condition(self, expr: str, ctx: dict[str, Any]) -> bool:
        expr = re.sub(r"^\$\{\{\s*(.*?)\s*\}\}$", r"\1", expr.strip())
        return all(self._atom(a.strip(), ctx) for a in expr.split("&&"))

    def _atom(self, atom: str, ctx: dict[str, Any]) -> bool:
        if m := re.fullmatch(r"startsWith\(github\.ref, '([^']*)'\)", atom):
            return self.ref.startswith(m.group(1))
        if m := re.fullmatch(r"([\w.-]+) (==|!=) '([^']*)'", atom):
            scope, _, name = m.group(1).partition(".")
            value = {"runner": {"os": "Linux"}, "env": ctx["env"],
                     "matrix": ctx["matrix"]}[scope].get(name, "")
            return (value == m.group(3)) == (m.group(2) == "==")
        raise AssertionError(f"condition not understood by the test runner: {atom}")

    # -- jobs ------------------------------------------------------------------------------------

    def run_job(self, workflow: dict[str, Any], name: str, matrix: dict[str, Any] | None = None,
                secrets: dict[str, str] | None = None) -> Path:
        """Run job `name` (one matrix entry); returns its workspace."""
        job = workflow["jobs"][name]
        self._count += 1
        ws = self.top / f"ws{self._count}-{name}"
        temp = self.top / f"tmp{self._count}"
        temp.mkdir()
        ctx: dict[str, Any] = {"matrix": matrix or {}, "secrets": secrets or {}}
        env = {**self.base_env, "GITHUB_WORKSPACE": str(ws), "RUNNER_OS": "Linux",
               "RUNNER_TEMP": str(temp), "GITHUB_REF": self.ref,
               "GITHUB_REF_NAME": self.ref.rsplit("/", 1)[-1], "GITHUB_REPOSITORY": "o/r",
               "GITHUB_ENV": str(temp / "env"), "GITHUB_PATH": str(temp / "path"),
               "GH_LOG": str(self.gh_log), "GH_RELEASED": str(self.released), "CI": "true"}
        for key, value in {**workflow.get("env", {}), **job.get("env", {})}.items():
            env[key] = self.expand(str(value), ctx)
        ws.mkdir()
        for step in job["steps"]:
            ctx["env"] = env
            if "if" in step and not self.condition(str(step["if"]), ctx):
                continue
            step_env = {**env, **{k: self.expand(str(v), ctx)
                                  for k, v in step.get("env", {}).items()}}
            if "uses" in step:
                self._action(step["uses"], {k: self.expand(str(v), ctx) for k, v in
                                            step.get("with", {}).items()}, ws, env)
            else:
                self._run(step, self.expand(step["run"], ctx), ws, step_env)
                self._absorb(temp, env)
        return ws

    def _run(self, step: dict[str, Any], script: str, ws: Path, env: dict[str, str]) -> None:
        shell = (["bash", "--noprofile", "--norc", "-eo", "pipefail"]
                 if step.get("shell") == "bash" else ["bash", "-e"])
        cwd = ws / step.get("working-directory", ".")
        proc = subprocess.run([*shell, "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, (f"step {step.get('name', script[:40])!r} failed "
                                      f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    @staticmethod
    def _absorb(temp: Path, env: dict[str, str]) -> None:
        """$GITHUB_ENV and $GITHUB_PATH written by a step apply to the later ones."""
        if (temp / "env").exists():
            for line in (temp / "env").read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
        if (temp / "path").exists():
            for line in (temp / "path").read_text().splitlines():
                env["PATH"] = line + os.pathsep + env["PATH"]
            (temp / "path").unlink()

    # -- actions ---------------------------------------------------------------------------------

    def _action(self, uses: str, args: dict[str, str], ws: Path, env: dict[str, str]) -> None:
        action = uses.split("@")[0]
        if action == "actions/checkout":
            ws.rmdir()
            subprocess.run(["git", "clone", "-q", self.repo, ws], check=True)
        elif action == "actions/setup-python":
            env["PATH"] = str(self.python_bin) + os.pathsep + env["PATH"]
        elif action == "actions/upload-artifact":
            self.upload(ws, args["name"], args["path"], args.get("if-no-files-found", "warn"))
        elif action == "actions/download-artifact":
            dest = ws / args.get("path", ".")
            if "pattern" in args:
                for artifact in sorted(self.artifacts.iterdir()):
                    if fnmatch.fnmatchcase(artifact.name, args["pattern"]):
                        shutil.copytree(artifact, dest / artifact.name, dirs_exist_ok=True)
            else:
                assert (self.artifacts / args["name"]).is_dir(), f"no artifact {args['name']}"
                shutil.copytree(self.artifacts / args["name"], dest, dirs_exist_ok=True)
        else:
            raise AssertionError(f"action not emulated: {uses}")

    def upload(self, ws: Path, name: str, path_input: str, if_none: str) -> None:
        patterns = [p.strip() for p in path_input.splitlines() if p.strip()]
        files = [p for p in sorted(ws.rglob("*")) if p.is_file() and ".git" not in
                 p.relative_to(ws).parts[:1]]
        chosen = []
        for file in files:
            rel = PurePosixPath(file.relative_to(ws).as_posix())
            if any(part.startswith(".") for part in rel.parts):
                continue  # include-hidden-files: false
            if _selected(rel, patterns):
                chosen.append(rel)
        if not chosen:
            assert if_none != "error", f"upload-artifact {name}: no files found"
            return
        search = _search_paths(patterns)
        if len(search) > 1:
            root = _common_ancestor(search)
        elif len(chosen) == 1 and search[0] == chosen[0]:
            root = chosen[0].parent
        else:
            root = search[0]
        dest = self.artifacts / name
        assert not dest.exists(), f"artifact {name} uploaded twice"
        for rel in chosen:
            target = dest / rel.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ws / rel, target)


def _segment_match(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_segment_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and \
        _segment_match(parts[1:], pattern[1:])


def _matches(rel: PurePosixPath, pattern: str) -> bool:
    """@actions/glob with implicit descendants: the path or one of its folders matches."""
    folders_only = pattern.endswith("/")
    pat = tuple(PurePosixPath(pattern.rstrip("/")).parts)
    candidates = [rel.parents[i] for i in range(len(rel.parts) - 1)]
    if not folders_only:
        candidates.insert(0, rel)
    return any(_segment_match(c.parts, pat) for c in candidates)


def _selected(rel: PurePosixPath, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        if pattern.startswith("!"):
            result = result and not _matches(rel, pattern[1:])
        else:
            result = result or _matches(rel, pattern)
    return result


def _search_paths(patterns: list[str]) -> list[PurePosixPath]:
    """The literal part of each include pattern before its first wildcard segment; duplicates
    and paths inside another search path dropped."""
    paths: list[PurePosixPath] = []
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        literal = []
        for part in PurePosixPath(pattern.rstrip("/")).parts:
            if any(c in part for c in "*?[]"):
                break
            literal.append(part)
        paths.append(PurePosixPath(*literal) if literal else PurePosixPath("."))
    kept = sorted(set(paths), key=lambda p: len(p.parts))
    return [p for i, p in enumerate(kept) if not any(
        q == PurePosixPath(".") or p.is_relative_to(q) for q in kept[:i])]


def _common_ancestor(paths: list[PurePosixPath]) -> PurePosixPath:
    common = os.path.commonpath([p.as_posix() for p in paths])
    return PurePosixPath(common or ".")
