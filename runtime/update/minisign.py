"""minisign's public-key and signature formats, and verifying a file against them.

A signature is minisign's own (jedisct1/minisign, the format Tauri's updater uses): Ed25519 over
the BLAKE2b-512 of the file ("ED"; the legacy "Ed" signs the file itself), plus a second Ed25519
signature over that signature and the trusted comment, so the comment cannot be changed either.
Ed25519 comes from `cryptography`; keys and signing are the packager's (packager/signing.py).

Texts accepted wherever a key or signature is read: minisign's file (two or four lines), a
public key's base64 line alone (`RW...`), or Tauri's spelling: the whole file base64-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

PREHASHED = b"ED"  # Ed25519 over BLAKE2b-512(file): minisign's default
LEGACY = b"Ed"  # Ed25519 over the file itself (`minisign -l`)
#: Bound on what a signature or key text may be (a minisign .sig is ~300 bytes).
MAX_TEXT = 4096
#: The legacy algorithm needs the whole file in memory: files up to this size only.
MAX_LEGACY_FILE = 64 << 20


class SignatureError(ValueError):
    """A key or signature that cannot be read, or a file that does not verify; `str()` is one
    line for the user."""


@dataclass(frozen=True)
class PublicKey:
    """A minisign public key: its 8-byte id and the Ed25519 key."""

    key_id: bytes
    key: bytes

    @property
    def id_hex(self) -> str:
        """The id as minisign prints it (`minisign public key 1A2B...`)."""
        return key_id_hex(self.key_id)

    def text(self) -> str:
        """minisign's `.pub` file."""
        line = base64.b64encode(LEGACY + self.key_id + self.key).decode()
        return f"untrusted comment: minisign public key {self.id_hex}\n{line}\n"


@dataclass(frozen=True)
class Signature:
    """A parsed minisign signature file."""

    algorithm: bytes  # PREHASHED or LEGACY
    key_id: bytes
    signature: bytes  # 64 bytes over the file (or its BLAKE2b-512)
    trusted_comment: str
    global_signature: bytes  # 64 bytes over `signature` + the trusted comment


def key_id_hex(key_id: bytes) -> str:
    """minisign prints a key id as a little-endian 64-bit number in hex."""
    return f"{int.from_bytes(key_id, 'little'):016X}"


def _unwrap(text: str, first: str) -> list[str]:
    """The lines of a minisign text, decoding Tauri's base64-of-the-file spelling first."""
    text = text.strip()
    if len(text) > MAX_TEXT * 2:
        raise SignatureError(f"expected a minisign {first}, got {len(text)} characters")
    if not text.startswith("untrusted comment:") and "\n" not in text:
        try:
            decoded = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if decoded.startswith("untrusted comment:"):
            text = decoded.strip()
    return [line.rstrip("\r") for line in text.split("\n")]


def _b64(line: str, size: int, problem: str) -> bytes:
    try:
        data = base64.b64decode(line.strip(), validate=True)
    except binascii.Error:
        data = b""
    if len(data) != size:
        raise SignatureError(problem)
    return data


def parse_public_key(text: str) -> PublicKey:
    """A public key from any accepted spelling; SignatureError if it is none."""
    lines = [line for line in _unwrap(text, "public key") if line.strip()]
    if lines and lines[0].startswith("untrusted comment:"):
        lines = lines[1:]
    expected = "expected a minisign public key (the content of KEY.pub)"
    if len(lines) != 1:
        raise SignatureError(expected)
    raw = _b64(lines[0], 42, expected)
    if raw[:2] != LEGACY:
        raise SignatureError(f"the public key's algorithm {raw[:2]!r} is not Ed25519 ('Ed')")
    return PublicKey(raw[2:10], raw[10:])


def parse_signature(text: str) -> Signature:
    """A signature from a `.sig` file's text or its base64 (latest.json's `signature`)."""
    lines = _unwrap(text, "signature")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != 4 or not lines[0].startswith("untrusted comment:") \
            or not lines[2].startswith("trusted comment: "):
        raise SignatureError("expected a minisign signature (4 lines: untrusted comment, "
                             "signature, trusted comment, global signature)")
    raw = _b64(lines[1], 74, "the signature is not valid minisign data")
    if raw[:2] not in (PREHASHED, LEGACY):
        raise SignatureError(f"unknown signature algorithm {raw[:2]!r}")
    return Signature(raw[:2], raw[2:10], raw[10:], lines[2][len("trusted comment: "):],
                     _b64(lines[3], 64, "the global signature is not valid minisign data"))


def blake2b_file(path: Path) -> bytes:
    """BLAKE2b-512 of a file (what a prehashed signature signs)."""
    digest = hashlib.blake2b(digest_size=64)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def verify_file(path: Path, signature: Signature, key: PublicKey) -> str:
    """Check that `signature` by `key` covers the file at `path` and its trusted comment;
    returns the trusted comment, or raises SignatureError saying what did not match."""
    if signature.key_id != key.key_id:
        raise SignatureError(f"the signature was made with key {key_id_hex(signature.key_id)}, "
                             f"not with the app's key {key.id_hex}")
    if signature.algorithm == PREHASHED:
        message = blake2b_file(path)
    else:
        if path.stat().st_size > MAX_LEGACY_FILE:
            raise SignatureError("legacy ('Ed') signatures are accepted for files up to "
                                 f"{MAX_LEGACY_FILE >> 20} MiB only: sign with minisign's default")
        message = path.read_bytes()
    _verify(key, signature.signature, message, f"the signature does not match {path.name}")
    _verify(key, signature.global_signature,
            signature.signature + signature.trusted_comment.encode(),
            "the signature's trusted comment was altered")
    return signature.trusted_comment


def _verify(key: PublicKey, sig: bytes, message: bytes, problem: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.key).verify(sig, message)
    except InvalidSignature:
        raise SignatureError(problem) from None
