"""Update-signing keys and signatures (packager/signing.py, runtime/update/minisign.py) against
Debian's `minisign` both ways: it verifies what we sign with our keys, we verify what it signs
and sign with its keys."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wvwasi.packager.signing import generate, parse_secret_key, secret_key_text, sign_file
from wvwasi.runtime.update.minisign import (
    SignatureError,
    parse_public_key,
    parse_signature,
    verify_file,
)

MINISIGN = shutil.which("minisign")


def _minisign(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert MINISIGN, "minisign is missing: .ci/setup installs the Debian package minisign"
    return subprocess.run([MINISIGN, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def _wvwasi(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wvwasi", *args], cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize("password", ["correct horse", None])
def test_minisign_verifies_our_signatures_and_signs_with_our_keys(tmp_path: Path,
                                                                 password: str | None) -> None:
    args = ["signer", "generate", "-w", "k"] + (["--password", password] if password else [])
    made = _wvwasi(*args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0  # the secret key is the owner's only
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4000)
    signed = _wvwasi("signer", "sign", "f.bin", "-k", "k",
                     *(["-p", password] if password else []), cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    ok = _minisign("-V", "-p", str(tmp_path / "k.pub"), "-m", str(tmp_path / "f.bin"),
                   "-x", str(tmp_path / "f.bin.sig"))
    assert ok.returncode == 0 and "comment signature verified" in ok.stdout, ok.stderr
    # minisign decrypts our secret key (our scrypt + checksum) and signs with it
    out = _minisign("-S", "-s", str(tmp_path / "k"), "-m", str(tmp_path / "f.bin"),
                    "-x", str(tmp_path / "theirs.sig"), stdin=f"{password}\n" if password else "")
    assert out.returncode == 0, out.stderr
    key = parse_public_key((tmp_path / "k.pub").read_text())
    verify_file(tmp_path / "f.bin", parse_signature((tmp_path / "theirs.sig").read_text()), key)
    # and a changed byte fails minisign's check of our signature
    (tmp_path / "f.bin").write_bytes(b"x" + (tmp_path / "f.bin").read_bytes()[1:])
    bad = _minisign("-V", "-p", str(tmp_path / "k.pub"), "-m", str(tmp_path / "f.bin"),
                    "-x", str(tmp_path / "f.bin.sig"))
    assert bad.returncode != 0


def test_we_verify_minisign_signatures_and_sign_with_its_keys(tmp_path: Path) -> None:
    made = _minisign("-G", "-W", "-p", str(tmp_path / "m.pub"), "-s", str(tmp_path / "m.key"))
    assert made.returncode == 0, made.stderr
    data = tmp_path / "data"
    data.write_bytes(b"release 0.2.0\n" * 1000)
    for legacy in ([], ["-l"]):  # minisign's default (prehashed) and legacy signatures
        out = _minisign("-S", *legacy, "-s", str(tmp_path / "m.key"), "-m", str(data),
                        "-x", str(tmp_path / "m.sig"), "-t", "release\tcomment")
        assert out.returncode == 0, out.stderr
        sig = parse_signature((tmp_path / "m.sig").read_text())
        key = parse_public_key((tmp_path / "m.pub").read_text())
        assert verify_file(data, sig, key) == "release\tcomment"
    ours = parse_secret_key((tmp_path / "m.key").read_text(), None)
    (tmp_path / "data.sig").write_text(sign_file(data, ours))
    ok = _minisign("-V", "-p", str(tmp_path / "m.pub"), "-m", str(data),
                   "-x", str(tmp_path / "data.sig"))
    assert ok.returncode == 0, ok.stderr


def test_tampering_wrong_key_and_altered_comment_are_refused(tmp_path: Path) -> None:
    _, key = generate(None)
    _, other = generate(None)
    f, g = tmp_path / "a", tmp_path / "b"
    f.write_bytes(b"one")
    g.write_bytes(b"two")
    text = sign_file(f, key)
    sig = parse_signature(text)
    assert verify_file(f, sig, key.public_key).startswith("timestamp:")
    with pytest.raises(SignatureError, match="does not match b"):  # another file's signature
        verify_file(g, sig, key.public_key)
    with pytest.raises(SignatureError, match="made with key"):  # the wrong key
        verify_file(f, sig, other.public_key)
    lines = text.splitlines()
    lines[2] = lines[2] + "x"
    with pytest.raises(SignatureError, match="trusted comment was altered"):
        verify_file(f, parse_signature("\n".join(lines)), key.public_key)
    # Tauri's spellings: the .sig and the .pub base64-encoded whole, the key's line alone
    tauri_sig = base64.b64encode(text.encode()).decode()
    pub = key.public_key.text()
    for spelling in (pub, base64.b64encode(pub.encode()).decode(), pub.splitlines()[1]):
        verify_file(f, parse_signature(tauri_sig), parse_public_key(spelling))
    for junk in ("", "RWQ", "untrusted comment: x\nAAAA", "x" * 100_000):
        with pytest.raises(SignatureError):
            parse_public_key(junk)
        with pytest.raises(SignatureError):
            parse_signature(junk)


def test_secret_key_password(tmp_path: Path) -> None:
    text, key = generate("pw")
    assert parse_secret_key(text, "pw") == key
    assert parse_secret_key(base64.b64encode(text.encode()).decode(), "pw") == key  # Tauri's
    with pytest.raises(SignatureError, match="wrong password"):
        parse_secret_key(text, "pW")
    with pytest.raises(SignatureError, match="encrypted"):
        parse_secret_key(text, None)
    assert parse_secret_key(secret_key_text(key, None), None) == key


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text("keep")
    out = _wvwasi("signer", "generate", "-w", "k", cwd=tmp_path)
    assert out.returncode == 1 and "already exist" in out.stderr
    assert (tmp_path / "k.pub").read_text() == "keep" and not (tmp_path / "k").exists()
