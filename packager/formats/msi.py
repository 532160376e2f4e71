"""`msi`: a per-user Windows Installer package compiled with wixl (msitools; works on Linux).

The UpgradeCode is a UUIDv5 of the app identifier, so every version of an app shares it and a
newer .msi replaces an older one (MajorUpgrade). Component GUIDs are UUIDv5s of the installed
path, stable across versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

from wvwasi.packager.formats import FormatOptions, _associations, _webview2
from wvwasi.packager.formats._sign import sign_windows
from wvwasi.packager.stage import StagedApp
from wvwasi.packager.tools import run
from wvwasi.runtime.update.install import MSI_MARKER
from wvwasi.templates import ROOT as TEMPLATES

TOOLS = ("wixl",)
#: Namespace of wvwasi's MSI UUIDs.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "msi.wvwasi.dev")


def upgrade_code(identifier: str) -> str:
    """The app's stable MSI UpgradeCode."""
    return str(uuid.uuid5(NAMESPACE, identifier)).upper()


def msi_version(version: str) -> str:
    """`1.2.3-beta+x` -> `1.2.3` (MSI ProductVersion is numeric)."""
    return ".".join(re.findall(r"\d+", version.split("-")[0].split("+")[0])[:3])


def _id(kind: str, rel: str) -> str:
    return f"{kind}_{hashlib.sha1(rel.encode()).hexdigest()[:20]}"


def _attr(text: str) -> str:
    return quoteattr(text)[1:-1]


def tree_xml(app: StagedApp, base: Path) -> tuple[str, list[str]]:
    """(nested Directory/Component/File elements, component ids) for the app folder; file
    sources are relative to `base` (wixl takes no absolute paths)."""
    ident = app.manifest.app.identifier
    components: list[str] = []

    def folder(path: Path, depth: int) -> list[str]:
        pad = "  " * depth
        lines: list[str] = []
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            rel = entry.relative_to(app.root).as_posix()
            if entry.is_dir():
                lines.append(f'{pad}<Directory Id="{_id("d", rel)}" Name={quoteattr(entry.name)}>')
                lines += folder(entry, depth + 1)
                lines.append(f"{pad}</Directory>")
                continue
            cid = _id("c", rel)
            guid = str(uuid.uuid5(NAMESPACE, f"{ident}/{rel}")).upper()
            components.append(cid)
            lines += [
                f'{pad}<Component Id="{cid}" Guid="{guid}">',
                f'{pad}  <File Id="{_id("f", rel)}" Name={quoteattr(entry.name)} '
                f'Source={quoteattr(os.path.relpath(entry, base))} KeyPath="yes" />',
                f"{pad}</Component>",
            ]
        return lines

    return "\n".join(folder(app.root, 6)), components


def webview2_xml(app: StagedApp, embedded: Path | None, base: Path) -> tuple[str, list[str]]:
    """(elements, component ids) of the WebView2 step for `[bundle.windows] webview2` (see
    _webview2.py): a deferred custom action, run at install (not removal) only when the
    runtime's registry key is missing. wixl cannot run an exe from the Binary table, so an
    embedded installer is installed as a file (webview2/ in the app folder) and run from there."""
    mode = _webview2.mode(app)
    if mode == "skip":
        return '    <!-- [bundle.windows] webview2 = "skip" -->', []
    args = " ".join(_webview2.INSTALL_ARGS)
    lines = [f'    <!-- [bundle.windows] webview2 = "{mode}" -->']
    components: list[str] = []
    if embedded is None:  # download-bootstrapper: PowerShell downloads and runs it
        placeholder = "\0"  # the download's path: an MSI property, not to be escaped
        script = (_webview2.download_command(placeholder).split(" -Command ", 1)[1].strip('"')
                  + f"; Start-Process -Wait -FilePath '{placeholder}' -ArgumentList '{args}'")
        # `[` `]` are property references in a formatted field: escaped as [\[] and [\]]
        script = "".join({"[": "[\\[]", "]": "[\\]]"}.get(c, c) for c in script)
        script = script.replace(placeholder, "[TempFolder]MicrosoftEdgeWebview2Setup.exe")
        command = _webview2.download_command(placeholder).split(" -Command ", 1)[0]
        lines += [
            '    <CustomAction Id="FindPowerShell" Property="WEBVIEW2_POWERSHELL" '
            'Value="[System64Folder]WindowsPowerShell\\v1.0\\powershell.exe" />',
            '    <CustomAction Id="InstallWebView2" Property="WEBVIEW2_POWERSHELL" ExeCommand='
            + quoteattr(command.removeprefix("powershell.exe ") + f' -Command "{script}"'),
        ]
        actions = ["FindPowerShell", "InstallWebView2"]
    else:
        name = _webview2.EMBEDDED[mode][1]
        guid = str(uuid.uuid5(NAMESPACE, f"{app.manifest.app.identifier}/webview2")).upper()
        lines += [
            '    <DirectoryRef Id="INSTALLDIR">',
            '      <Directory Id="WebView2Dir" Name="webview2">',
            f'        <Component Id="WebView2Installer" Guid="{guid}">',
            f'          <File Id="WebView2Setup" Name="{name}" '
            f'Source={quoteattr(os.path.relpath(embedded, base))} KeyPath="yes" />',
            "        </Component>",
            "      </Directory>",
            "    </DirectoryRef>",
            f'    <CustomAction Id="InstallWebView2" FileKey="WebView2Setup" ExeCommand="{args}"',
        ]
        components.append("WebView2Installer")
        actions = ["InstallWebView2"]
    lines[-1] += ' Execute="deferred" Impersonate="yes" Return="ignore" />'
    key = _attr(_webview2.CLIENT_KEY)
    missing = _attr('NOT REMOVE AND (NOT WEBVIEW2_MACHINE OR WEBVIEW2_MACHINE = "0.0.0.0") '
                    'AND (NOT WEBVIEW2_USER OR WEBVIEW2_USER = "0.0.0.0")')
    after = "InstallFiles"
    lines += [
        '    <Property Id="WEBVIEW2_MACHINE">',
        f'      <RegistrySearch Id="WebView2Machine" Root="HKLM" Key="{key}" Name="pv" '
        'Type="raw" Win64="no" />',
        "    </Property>",
        '    <Property Id="WEBVIEW2_USER">',
        f'      <RegistrySearch Id="WebView2User" Root="HKCU" Key="{key}" Name="pv" Type="raw" />',
        "    </Property>",
        "    <InstallExecuteSequence>",
    ]
    for action in actions:
        lines.append(f'      <Custom Action="{action}" After="{after}">{missing}</Custom>')
        after = action
    lines.append("    </InstallExecuteSequence>")
    return "\n".join(lines), components


#: The immediate custom action (JScript) that sets RUNNING_PROPERTY when the installed app runs.
RUNNING_SCRIPT = """// Rendered by wvwasi.packager.formats.msi: sets $property if $exe runs.
// A running program cannot be opened for writing (the NSIS setup checks the same way).
function FindRunningApp() {
  var exe = Session.Property("LocalAppDataFolder") + $path;
  var fso = new ActiveXObject("Scripting.FileSystemObject");
  if (fso.FileExists(exe)) {
    try {
      fso.OpenTextFile(exe, 8, false).Close();
    } catch (e) {
      Session.Property("$property") = "1";
    }
  }
  return 1;
}
"""
RUNNING_PROPERTY = "WVWASI_APP_RUNNING"


def refuse_if_running_xml(app: StagedApp, base: Path) -> str:
    """A launch condition that stops an install, upgrade or removal while the installed app
    runs, with a message. wixl has no util:CloseApplication and cannot run a program from the
    Binary table; what it has is a JScript custom action (type 5) that sets a property, run
    before LaunchConditions in both sequences (`Return="ignore"`: where scripting is disabled
    the check is skipped and Windows Installer's own files-in-use handling remains). The
    script is written into `base`, the folder wixl compiles in."""
    script = base / "find-running-app.js"
    path = f"Programs\\{app.slug}\\{app.executable.name}"
    script.write_text(string.Template(RUNNING_SCRIPT).substitute(
        property=RUNNING_PROPERTY, exe=app.executable.name, path=json.dumps(path)),
        encoding="utf-8")
    message = f"{app.manifest.app.name} is running. Close it, then try again."
    message = _attr(_formatted(message))
    return "\n".join([
        '    <Binary Id="FindRunningAppScript" '
        f'SourceFile={quoteattr(os.path.relpath(script, base))} />',
        '    <CustomAction Id="FindRunningApp" BinaryKey="FindRunningAppScript" '
        'JScriptCall="FindRunningApp" Impersonate="yes" Return="ignore" />',
        *(f'    <{seq}><Custom Action="FindRunningApp" Before="LaunchConditions" /></{seq}>'
          for seq in ("InstallUISequence", "InstallExecuteSequence")),
        f'    <Condition Message="{message}">NOT {RUNNING_PROPERTY}</Condition>',
    ])


def _formatted(text: str) -> str:
    """`text` for an MSI Formatted field: `[` and `]` would be property references."""
    return "".join({"[": "[\\[]", "]": "[\\]]"}.get(c, c) for c in text)


def registry_xml(app: StagedApp) -> tuple[str, list[str]]:
    """(elements, component ids) of the file associations' and URL schemes' HKCU values, one
    component whose key path is the first of them; removing the product removes them."""
    reg = _associations.windows_registration(app.manifest)
    if not reg.values:
        return "", []
    guid = str(uuid.uuid5(NAMESPACE, f"{app.manifest.app.identifier}/associations")).upper()
    exe = f"[INSTALLDIR]{_formatted(app.executable.name)}"
    lines = ['    <DirectoryRef Id="INSTALLDIR">',
             f'      <Component Id="Associations" Guid="{guid}">']
    for i, v in enumerate(reg.values):
        value = _formatted(v.value).replace(_associations.EXE, exe) \
            .replace(_associations.ICON, "[INSTALLDIR]app\\icon.ico")
        name = f" Name={quoteattr(v.name)}" if v.name else ""
        lines.append(f'        <RegistryValue Root="HKCU" Key={quoteattr(v.key)}{name} '
                     f'Type="string" Value={quoteattr(value)}'
                     + (' KeyPath="yes" />' if i == 0 else " />"))
    lines += ["      </Component>", "    </DirectoryRef>"]
    return "\n".join(lines), ["Associations"]


def marker_xml(app: StagedApp, base: Path) -> tuple[str, list[str]]:
    """(elements, component ids) of the file that tells the app's updater it was installed by
    this MSI (runtime/update/install.py `MSI_MARKER`): installed, upgraded and removed with the
    app by Windows Installer, in the app's folder, so it holds for that folder only (an unpacked
    zip or an NSIS install elsewhere is not taken for it, as the product's registry entries
    would be). Its text is written into `base`, the folder wixl compiles in."""
    text = base / MSI_MARKER
    text.write_text(f"{app.manifest.app.name} was installed by its .msi (Windows Installer): "
                    "its updates are .msi files too.\r\n", encoding="utf-8")
    guid = str(uuid.uuid5(NAMESPACE, f"{app.manifest.app.identifier}/msi-marker")).upper()
    return "\n".join([
        '    <DirectoryRef Id="INSTALLDIR">',
        f'      <Component Id="MsiMarker" Guid="{guid}">',
        f'        <File Id="MsiMarker" Name="{MSI_MARKER}" '
        f'Source={quoteattr(os.path.relpath(text, base))} KeyPath="yes" />',
        "      </Component>",
        "    </DirectoryRef>",
    ]), ["MsiMarker"]


def wxs(app: StagedApp, base: Path, webview2: Path | None = None) -> str:
    """The .wxs source text, to be compiled in folder `base` (the running-app check's script
    is written there); `webview2`: the WebView2 installer to embed (modes that embed one)."""
    info = app.manifest.app
    tree, components = tree_xml(app, base)
    webview2_elements, webview2_components = webview2_xml(app, webview2, base)
    components += webview2_components
    registry, registry_components = registry_xml(app)
    components += registry_components
    marker, marker_components = marker_xml(app, base)
    components += marker_components
    template = string.Template((TEMPLATES / "app.wxs").read_text(encoding="utf-8"))
    return template.substitute(
        name=_attr(info.name),
        version=msi_version(info.version),
        publisher=_attr(info.publisher or info.name),
        description=_attr(info.description or info.name),
        upgrade_code=upgrade_code(info.identifier),
        icon=_attr(os.path.relpath(app.payload / "icon.ico", base)),
        slug=_attr(app.slug),
        exe=_attr(app.executable.name),
        identifier=_attr(info.identifier),
        shortcut_guid=str(uuid.uuid5(NAMESPACE, f"{info.identifier}/shortcut")).upper(),
        tree=tree,
        refuse_if_running=refuse_if_running_xml(app, base),
        webview2=webview2_elements,
        registry=registry,
        marker=marker,
        component_refs="\n".join(f'      <ComponentRef Id="{c}" />' for c in components),
    )


def build(app: StagedApp, out: Path, opts: FormatOptions) -> list[Path]:
    opts.work.mkdir(parents=True, exist_ok=True)
    source = opts.work / f"{app.slug}.wxs"
    webview2 = _webview2.embedded_file(app, "msi")
    source.write_text(wxs(app, source.parent, webview2), encoding="utf-8")
    dest = out / app.artefact_name(".msi")
    run(["wixl", "--arch", app.arch.windows, "-o", dest, source], step="msi")
    sign_windows(app, dest, "msi")
    return [dest]
