"""`nsis`: a per-user Windows setup.exe compiled with makensis (works on Linux too).

Installs into %LOCALAPPDATA%\\Programs\\<slug> without admin rights, adds a Start-menu shortcut,
an uninstaller and an Add/Remove Programs entry; installing over an older version first runs that
version's uninstaller, so no stale files stay behind. Every file is listed explicitly (install and
uninstall), from the staged Windows app folder.
"""

from __future__ import annotations

import string
from pathlib import Path, PureWindowsPath

from wvwasi.packager.formats import FormatOptions, _associations, _webview2
from wvwasi.packager.formats._linux import installed_size_kib
from wvwasi.packager.formats._sign import sign_windows, uninstaller_signing_command
from wvwasi.packager.stage import StagedApp, walk
from wvwasi.packager.tools import run
from wvwasi.packager.winres import numeric_version
from wvwasi.runtime.update.install import RELAUNCH_FLAG
from wvwasi.templates import ROOT as TEMPLATES

TOOLS = ("makensis",)


def quote(text: str) -> str:
    """`text` for inside an NSIS double-quoted string."""
    return text.replace("$", "$$").replace('"', '$\\"').replace("\n", " ")


def file_lists(app: StagedApp) -> tuple[list[str], list[str]]:
    """(install lines, uninstall lines) naming every file of the app folder."""
    install: list[str] = ['  SetOutPath "$INSTDIR"']
    uninstall: list[str] = []
    dirs: list[str] = []
    current = ""
    for path in walk(app.root):
        rel = str(PureWindowsPath(path.relative_to(app.root)))
        if path.is_dir():
            dirs.append(rel)
            continue
        folder = str(PureWindowsPath(rel).parent)
        folder = "" if folder == "." else folder
        if folder != current:
            target = "$INSTDIR" + (f"\\{quote(folder)}" if folder else "")
            install.append(f'  SetOutPath "{target}"')
            current = folder
        install.append(f'  File "{quote(str(path))}"')
        uninstall.append(f'  Delete "$INSTDIR\\{quote(rel)}"')
    uninstall += [f'  RMDir "$INSTDIR\\{quote(d)}"' for d in reversed(dirs)]
    return install, uninstall


def webview2_lines(app: StagedApp, embedded: Path | None) -> list[str]:
    """The installer's WebView2 step for `[bundle.windows] webview2` (see _webview2.py)."""
    mode = _webview2.mode(app)
    if mode == "skip":
        return ['  ; [bundle.windows] webview2 = "skip": the app itself reports a missing runtime']
    args = " ".join(_webview2.INSTALL_ARGS)
    if embedded is None:  # download-bootstrapper
        setup = "$TEMP\\MicrosoftEdgeWebview2Setup.exe"
        fetch = [
            f'    Delete "{setup}"',
            '    DetailPrint "Downloading the WebView2 runtime bootstrapper"',
            f'    nsExec::ExecToLog `{_webview2.download_command(setup)}`',
            "    Pop $1",
            f'    ${{IfNot}} ${{FileExists}} "{setup}"',
            '      MessageBox MB_OK|MB_ICONSTOP "Could not download the Microsoft Edge WebView2 '
            'Runtime ($1), which ${APP_NAME} needs. Check the internet connection and run '
            'this installer again." /SD IDOK',
            "      SetErrorLevel 6",
            "      Quit",
            "    ${EndIf}",
        ]
    else:
        setup = f"$PLUGINSDIR\\{_webview2.EMBEDDED[mode][1]}"
        fetch = ["    InitPluginsDir", f'    File "/oname={setup}" "{quote(str(embedded))}"']
    return [
        f'  ; [bundle.windows] webview2 = "{mode}"',
        "  Call WebView2Version",
        '  ${If} $0 == ""',
        *fetch,
        '    DetailPrint "Installing the WebView2 runtime"',
        f"    ExecWait '\"{setup}\" {args}' $1",
        '    DetailPrint "WebView2 runtime installer: exit status $1"',
        *([f'    Delete "{setup}"'] if embedded is None else []),
        "  ${EndIf}",
    ]


def compressor_line(compression: str) -> str:
    """The .nsi line for `[bundle.windows] nsis_compression` (solid: one stream for all files)."""
    return "SetCompress off" if compression == "none" else f"SetCompressor /SOLID {compression}"


def script(app: StagedApp, outfile: Path, icon: Path, webview2: Path | None = None) -> str:
    """The .nsi text; `webview2`: the WebView2 installer to embed (modes that embed one)."""
    info = app.manifest.app
    install, uninstall = file_lists(app)
    register, unregister = registry_lines(app)
    template = string.Template((TEMPLATES / "installer.nsi").read_text(encoding="utf-8"))
    return template.substitute(
        name=quote(info.name),
        version=quote(info.version),
        numeric_version=numeric_version(info.version),
        publisher=quote(info.publisher or info.name),
        exe=quote(app.executable.name),
        identifier=quote(info.identifier),
        slug=quote(app.slug),
        outfile=quote(str(outfile)),
        icon=quote(str(icon)),
        size_kib=installed_size_kib(app.root),
        install_files="\n".join(install),
        uninstall_files="\n".join(uninstall),
        compressor=compressor_line(app.manifest.bundle.windows.nsis_compression),
        webview2_key=_webview2.CLIENT_KEY.rsplit("\\", 1)[1],
        webview2_section="\n".join(webview2_lines(app, webview2)),
        uninstall_finalize=_finalize(app),
        register=register,
        unregister=unregister,
        relaunch_flag=RELAUNCH_FLAG,
    )


def registry_lines(app: StagedApp) -> tuple[str, str]:
    """(install, uninstall) lines for the file associations and URL schemes (per user), each
    followed by the shell's association-changed notification."""
    reg = _associations.windows_registration(app.manifest)
    if not reg.values:
        return "", ""

    exe = f"$INSTDIR\\{quote(app.executable.name)}"

    def text(value: str) -> str:
        return quote(value).replace(_associations.EXE, exe) \
            .replace(_associations.ICON, "$INSTDIR\\app\\icon.ico")

    notify = "  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'"
    install = [f'  WriteRegStr HKCU "{quote(v.key)}" "{quote(v.name)}" "{text(v.value)}"'
               for v in reg.values]
    uninstall = [f'  DeleteRegKey HKCU "{quote(k)}"' for k in reg.keys]
    for key, name in reg.shared_values:  # .ext\OpenWithProgids, and .ext if now empty
        parent = key.rsplit("\\", 1)[0]
        uninstall += [f'  DeleteRegValue HKCU "{quote(key)}" "{quote(name)}"',
                      f'  DeleteRegKey /ifempty HKCU "{quote(key)}"',
                      f'  DeleteRegKey /ifempty HKCU "{quote(parent)}"']
    return "\n".join([*install, notify]), "\n".join([*uninstall, notify])


def _finalize(app: StagedApp) -> str:
    """`!uninstfinalize`: sign the uninstaller as makensis writes it (if the app is signed)."""
    command = uninstaller_signing_command(app)
    return "" if command is None else f"!uninstfinalize `{command}` = 0"


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    dest = out / app.artefact_name("-setup.exe")
    nsi = opts.work / "installer.nsi"
    opts.work.mkdir(parents=True, exist_ok=True)
    webview2 = _webview2.embedded_file(app, "nsis")
    nsi.write_text(script(app, dest, app.payload / "icon.ico", webview2), encoding="utf-8")
    log = run(["makensis", "-V4", "-INPUTCHARSET", "UTF8", nsi], step="nsis")
    (opts.work / "makensis.log").write_text(log, encoding="utf-8")
    sign_windows(app, dest, "nsis")
    return [dest]
