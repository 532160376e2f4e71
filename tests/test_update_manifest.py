"""`[update]` in the manifest (runtime/manifest.py), version order (runtime/update/versions.py)
and `wvwasi build`'s refusals of a signing key before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from build_helpers import cli_env, error_line, wvwasi

from wvwasi.packager.signing import generate
from wvwasi.runtime.manifest import ManifestError, load_manifest
from wvwasi.runtime.update.fetch import FetchError, check_url
from wvwasi.runtime.update.versions import is_newer

APP = '[app]\nname = "Demo"\nidentifier = "com.example.demo"\n'
_, KEY = generate(None)
PUB = KEY.public_key.text()


def write(root: Path, update: str) -> Path:
    (root / "ui").mkdir(parents=True, exist_ok=True)
    (root / "ui" / "index.html").write_text("<p>hi</p>")
    (root / "wvwasi.toml").write_text(APP + "[update]\n" + update)
    return root


def test_update_settings_load(tmp_path: Path):
    m = load_manifest(write(tmp_path, f'''
endpoints = ["https://example.com/{{{{target}}}}/{{{{arch}}}}/{{{{current_version}}}}",
             "http://127.0.0.1:8000/latest.json", "http://[::1]/l.json", "http://localhost/x"]
pubkey = """{PUB}"""
download_url = "https://github.com/o/r/releases/download/v{{{{version}}}}"
windows = {{ install_mode = "quiet" }}
'''))
    assert m.update is not None
    assert m.update.endpoints[0] == "https://example.com/{{target}}/{{arch}}/{{current_version}}"
    assert m.update.windows.install_mode == "quiet" and m.update.pubkey.strip() == PUB.strip()
    assert load_manifest(write(tmp_path, f'endpoints = ["https://e.com/l.json"]\n'
                               f'pubkey = "{PUB.splitlines()[1]}"\n')).update.download_url is None


@pytest.mark.parametrize(("key", "message", "update"), [
    ("update.endpoints[1]", 'expected an https:// URL (http only to a loopback address), got '
     '"http://example.com/latest.json"',
     'endpoints = ["https://a.com/x", "http://example.com/latest.json"]\npubkey = "{pub}"'),
    ("update.endpoints[0]", 'expected an http(s) URL, got "latest.json"',
     'endpoints = ["latest.json"]\npubkey = "{pub}"'),
    ("update.endpoints", "expected at least one URL of a latest.json",
     'endpoints = []\npubkey = "{pub}"'),
    ("update.pubkey", "missing required key", 'endpoints = ["https://a.com/x"]'),
    ("update.pubkey", "expected a minisign public key (the content of KEY.pub)",
     'endpoints = ["https://a.com/x"]\npubkey = "not a key"'),
    ("update.download_url", 'expected an https:// URL (http only to a loopback address), got '
     '"ftp://a.com/"', 'endpoints = ["https://a.com/x"]\npubkey = "{pub}"\n'
     'download_url = "ftp://a.com/"'),
    ("update.windows.install_mode", 'expected "passive", "quiet" or "basic-ui", got "silent"',
     'endpoints = ["https://a.com/x"]\npubkey = "{pub}"\nwindows.install_mode = "silent"'),
    ("update.channel", "unknown key", 'endpoints = ["https://a.com/x"]\npubkey = "{pub}"\n'
     'channel = "beta"'),
])
def test_bad_update_settings_name_the_file_and_key(tmp_path: Path, key: str, message: str,
                                                   update: str):
    root = write(tmp_path, update.replace("{pub}", PUB.splitlines()[1]))
    with pytest.raises(ManifestError) as e:
        load_manifest(root)
    assert str(e.value) == f"{root / 'wvwasi.toml'}: {key}: {message}"


def test_only_https_or_loopback_is_fetched():
    check_url("https://example.com/a")
    check_url("http://127.0.0.2:9/a")
    for bad in ("http://example.com/a", "http://127.0.0.1.nip.io/a", "file:///etc/passwd",
                "ftp://127.0.0.1/a", "https:///a"):
        with pytest.raises(FetchError, match=r"refused|not a URL"):
            check_url(bad)


@pytest.mark.parametrize(("newer", "older"), [
    ("0.2.0", "0.1.0"), ("1.0.0", "1.0.0-rc.1"), ("1.0.0-rc.2", "1.0.0-rc.1"),
    ("1.0.0-beta", "1.0.0-alpha"), ("1.0.0-alpha.beta", "1.0.0-alpha.1"), ("0.10.0", "0.9.9"),
    ("v2.0", "1.9.9"),
])
def test_version_order(newer: str, older: str):
    assert is_newer(newer, older) and not is_newer(older, newer)
    assert not is_newer(older, older) and not is_newer("1.0.0+build.5", "1.0.0")


def test_build_refuses_a_signing_key_that_is_not_the_app_s(tmp_path: Path):
    root = write(tmp_path / "p", f'endpoints = ["https://a.com/x"]\npubkey = """{PUB}"""\n')
    other_text, other = generate("pw")
    cases = [
        ({"WVWASI_SIGNING_PRIVATE_KEY": other_text, "WVWASI_SIGNING_PRIVATE_KEY_PASSWORD": "pw"},
         f"error: sign updates: WVWASI_SIGNING_PRIVATE_KEY is key {other.public_key.id_hex}, "
         f"but [update] pubkey is key {KEY.public_key.id_hex}"),
        ({"WVWASI_SIGNING_PRIVATE_KEY": other_text, "WVWASI_SIGNING_PRIVATE_KEY_PASSWORD": "no"},
         "error: sign updates: WVWASI_SIGNING_PRIVATE_KEY: wrong password for the secret key"),
        ({"WVWASI_SIGNING_PRIVATE_KEY": str(tmp_path / "missing.key")},
         "error: sign updates: WVWASI_SIGNING_PRIVATE_KEY: cannot read the secret key"),
    ]
    for env, expected in cases:
        proc = wvwasi("build", root, "--format", "tar.gz", "--out", tmp_path / "out",
                      env=cli_env(**env))
        assert error_line(proc).startswith(expected), proc.stderr
        assert not (tmp_path / "out").exists()  # refused before anything was written
