"""A throwaway Authenticode certificate and osslsigncode's verdict, for the Windows signing
tests (the certificate is self-signed, so verification trusts it explicitly)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SUBJECT = "CN=wvwasi test signer"
PASSWORD = "s3cret"


def make_certificate(top: Path) -> Path:
    """A self-signed code-signing certificate as a password-protected `top/cert.pfx` (its
    public part in `top/cert.pem`)."""
    top.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    top / "key.pem", "-out", top / "cert.pem", "-days", "30", "-subj",
                    f"/{SUBJECT}", "-addext", "extendedKeyUsage=codeSigning"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs12", "-export", "-out", top / "cert.pfx", "-inkey",
                    top / "key.pem", "-in", top / "cert.pem", "-passout", f"pass:{PASSWORD}"],
                   check=True, capture_output=True)
    return top / "cert.pfx"


def signing_env(pfx: Path) -> dict[str, str]:
    """The environment `wvwasi build` signs with."""
    return {"WVWASI_WINDOWS_CERT": str(pfx), "WVWASI_WINDOWS_CERT_PASSWORD": PASSWORD}


def verified_signer(file: Path, pfx: Path) -> bool:
    """Whether `file` carries a valid Authenticode signature by the certificate of `pfx`
    (`osslsigncode verify` against that certificate as the only trusted root)."""
    proc = subprocess.run(["osslsigncode", "verify", "-in", file, "-CAfile",
                           pfx.with_name("cert.pem")], capture_output=True, text=True)
    return (proc.returncode == 0 and "Signature verification: ok" in proc.stdout
            and SUBJECT in proc.stdout)
