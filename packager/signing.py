"""Update-signing keys and signatures in minisign's own formats (`wvwasi signer`, `wvwasi build`).

A secret key file is minisign's: Ed25519 key + id + BLAKE2b-256 checksum, encrypted (XOR) with
scrypt of the password (kdf "Sc", libsodium's scryptsalsa208sha256 parameters) or stored as is
(kdf none, `minisign -W`). So `minisign -S -s KEY` signs with our keys and we sign with its.
Verifying is the runtime's (runtime/update/minisign.py); the algorithms come from `cryptography`
and `hashlib`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from wvwasi.runtime.update.minisign import (
    LEGACY,
    MAX_TEXT,
    PREHASHED,
    PublicKey,
    SignatureError,
    _unwrap,
    blake2b_file,
    key_id_hex,
)

ENV_KEY = "WVWASI_SIGNING_PRIVATE_KEY"
ENV_PASSWORD = "WVWASI_SIGNING_PRIVATE_KEY_PASSWORD"
KDF_SCRYPT = b"Sc"
KDF_NONE = b"\0\0"
CHECKSUM = b"B2"
#: The scrypt cost written into new keys: the Rust minisign crate's (Tauri's), N=2^15, r=8, p=1,
#: 32 MiB. A key stores its own cost, so minisign's costlier keys (1 GiB) are read as well.
OPSLIMIT = 1 << 20
MEMLIMIT = 1 << 25
_SECRET_SIZE = 158


@dataclass(frozen=True)
class SecretKey:
    """A decrypted minisign secret key."""

    key_id: bytes
    seed: bytes  # the Ed25519 private key (32 bytes)
    public: bytes  # the Ed25519 public key (32 bytes)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self.public)


def scrypt_params(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """(N, r, p) as libsodium's crypto_pwhash_scryptsalsa208sha256 picks them."""
    opslimit = max(opslimit, 32768)
    r = 8
    by_ops = opslimit < memlimit // 32
    max_n = opslimit // (r * 4) if by_ops else memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    p = 1 if by_ops else min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF) // r
    return 1 << n_log2, r, max(p, 1)


def _keystream(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    n, r, p = scrypt_params(opslimit, memlimit)
    if n > 1 << 22 or p > 16:
        raise SignatureError("the secret key's scrypt cost is beyond what wvwasi accepts")
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=130 * r * n * p + (1 << 20), dklen=104)


def _checksum(key_id: bytes, secret: bytes) -> bytes:
    return hashlib.blake2b(LEGACY + key_id + secret, digest_size=32).digest()


def generate(password: str | None) -> tuple[str, SecretKey]:
    """A new key pair: (the secret key file's text, the key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = secrets.token_bytes(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    key = SecretKey(secrets.token_bytes(8), seed, public)
    return secret_key_text(key, password), key


def secret_key_text(key: SecretKey, password: str | None) -> str:
    """minisign's secret key file for `key`, encrypted with `password` unless it is None/""."""
    secret = key.seed + key.public
    keynum = key.key_id + secret + _checksum(key.key_id, secret)
    salt = secrets.token_bytes(32)
    kdf = KDF_SCRYPT if password else KDF_NONE
    if password:
        keynum = bytes(a ^ b for a, b in zip(keynum, _keystream(password, salt, OPSLIMIT,
                                                                 MEMLIMIT), strict=True))
    raw = (LEGACY + kdf + CHECKSUM + salt + OPSLIMIT.to_bytes(8, "little")
           + MEMLIMIT.to_bytes(8, "little") + keynum)
    what = "encrypted secret key" if password else "secret key"
    return f"untrusted comment: minisign {what}\n{base64.b64encode(raw).decode()}\n"


def parse_secret_key(text: str, password: str | None) -> SecretKey:
    """Decrypt a secret key file's text (minisign's, or Tauri's base64 of it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    lines = [line for line in _unwrap(text, "secret key") if line.strip()]
    if lines and lines[0].startswith("untrusted comment:"):
        lines = lines[1:]
    try:
        raw = base64.b64decode(lines[0].strip(), validate=True) if len(lines) == 1 else b""
    except ValueError:
        raw = b""
    if len(raw) != _SECRET_SIZE or raw[:2] != LEGACY or raw[4:6] != CHECKSUM:
        raise SignatureError("expected a minisign secret key (the file `wvwasi signer "
                             "generate` or `minisign -G` wrote)")
    kdf, salt, keynum = raw[2:4], raw[6:38], raw[54:]
    if kdf == KDF_SCRYPT:
        if not password:
            raise SignatureError(f"the secret key is encrypted: set {ENV_PASSWORD} "
                                 "(or pass --password)")
        stream = _keystream(password, salt, int.from_bytes(raw[38:46], "little"),
                            int.from_bytes(raw[46:54], "little"))
        keynum = bytes(a ^ b for a, b in zip(keynum, stream, strict=True))
    elif kdf != KDF_NONE:
        raise SignatureError(f"unknown key derivation {kdf!r} in the secret key")
    key_id, secret, check = keynum[:8], keynum[8:72], keynum[72:]
    unchecked = kdf == KDF_NONE and check == bytes(32)  # `minisign -W` leaves it zero
    if not unchecked and _checksum(key_id, secret) != check:
        raise SignatureError("wrong password for the secret key" if kdf == KDF_SCRYPT
                             else "the secret key is damaged (its checksum does not match)")
    public = Ed25519PrivateKey.from_private_bytes(secret[:32]).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    if public != secret[32:]:
        raise SignatureError("the secret key is damaged (its two halves do not match)")
    return SecretKey(key_id, secret[:32], public)


def read_key_source(value: str) -> str:
    """A key given as a path or as the key itself (the environment variable's two forms)."""
    stripped = value.strip()
    if stripped.startswith("untrusted comment:") or (len(stripped) > 100 and "\n" not in stripped
                                                      and not os.path.exists(stripped)):
        return value
    path = Path(stripped).expanduser()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT + 1)
    except OSError as e:
        raise SignatureError(f"cannot read the secret key {path}: {e.strerror or e}") from None
    if len(data) > MAX_TEXT:
        raise SignatureError(f"{path} is not a minisign secret key (too large)")
    return data.decode("utf-8", "replace")


def key_from_environment() -> SecretKey | None:
    """The key WVWASI_SIGNING_PRIVATE_KEY(_PASSWORD) name, or None when it is not set."""
    value = os.environ.get(ENV_KEY, "")
    if not value.strip():
        return None
    return parse_secret_key(read_key_source(value), os.environ.get(ENV_PASSWORD))


def sign_file(path: Path, key: SecretKey, trusted_comment: str | None = None) -> str:
    """minisign's signature file text for `path` (prehashed, as minisign signs by default)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(key.seed)
    if trusted_comment is None:
        trusted_comment = f"timestamp:{int(time.time())}\tfile:{path.name}\thashed"
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise SignatureError("a trusted comment is one line")
    signature = private.sign(blake2b_file(path))
    global_signature = private.sign(signature + trusted_comment.encode())
    line = base64.b64encode(PREHASHED + key.key_id + signature).decode()
    return (f"untrusted comment: signature from wvwasi secret key {key_id_hex(key.key_id)}\n"
            f"{line}\ntrusted comment: {trusted_comment}\n"
            f"{base64.b64encode(global_signature).decode()}\n")


def write_signature(path: Path, key: SecretKey, trusted_comment: str | None = None) -> Path:
    """Write `path.sig` beside `path`; returns it."""
    sig = path.with_name(path.name + ".sig")
    sig.write_text(sign_file(path, key, trusted_comment), encoding="utf-8")
    return sig
