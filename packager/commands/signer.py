"""`wvwasi signer generate -w KEY [--password P]` / `wvwasi signer sign FILE`: update-signing keys
and signatures in minisign's format (docs/update.md). Nothing is asked when stdin is not a
terminal: no `--password` then means an unencrypted key (generate) or the environment's.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `signer` subcommand."""
    p = sub.add_parser("signer", help="make update-signing keys, sign files (minisign format)",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = actions.add_parser("generate", help="write a key pair: KEY (secret) and KEY.pub")
    gen.add_argument("-w", "--write-keys", required=True, type=Path, metavar="KEY",
                     help="where to write the secret key (the public key goes to KEY.pub)")
    gen.add_argument("-p", "--password", help="encrypt the secret key with this password "
                     "(asked for on a terminal when not given; empty: unencrypted)")
    gen.add_argument("-f", "--force", action="store_true", help="overwrite existing keys")
    gen.set_defaults(run=run_generate)
    sign = actions.add_parser("sign", help="write FILE.sig, minisign's signature of FILE")
    sign.add_argument("file", type=Path)
    sign.add_argument("-k", "--private-key", metavar="KEY",
                      help="the secret key, a path or the key itself "
                      "(default: $WVWASI_SIGNING_PRIVATE_KEY)")
    sign.add_argument("-p", "--password",
                      help="its password (default: $WVWASI_SIGNING_PRIVATE_KEY_PASSWORD)")
    sign.set_defaults(run=run_sign)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def run_generate(args: argparse.Namespace) -> int:
    from wvwasi.packager.signing import generate

    secret, public = args.write_keys, args.write_keys.with_name(args.write_keys.name + ".pub")
    existing = [str(p) for p in (secret, public) if p.exists()]
    if existing and not args.force:
        return _fail(f"{' and '.join(existing)} already exist (--force overwrites)")
    password = args.password
    if password is None and sys.stdin.isatty():
        password = getpass.getpass("Password (empty: none): ")
        if password and getpass.getpass("Password again: ") != password:
            return _fail("the passwords differ")
    text, key = generate(password or None)
    try:
        secret.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        public.write_text(key.public_key.text(), encoding="utf-8")
    except OSError as e:
        return _fail(f"cannot write {e.filename or secret}: {e.strerror or e}")
    print(f"secret key: {secret}{' (encrypted)' if password else ' (NOT encrypted)'}\n"
          f"public key: {public} (its content goes into [update] pubkey)\n"
          f"{public.read_text(encoding='utf-8').splitlines()[1]}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from wvwasi.packager.signing import (
        ENV_KEY,
        ENV_PASSWORD,
        parse_secret_key,
        read_key_source,
        write_signature,
    )
    from wvwasi.runtime.update.minisign import SignatureError

    source = args.private_key or os.environ.get(ENV_KEY)
    if not source:
        return _fail(f"no secret key: pass -k KEY or set {ENV_KEY}")
    password = args.password if args.password is not None else os.environ.get(ENV_PASSWORD)
    try:
        text = read_key_source(source)
        try:
            key = parse_secret_key(text, password)
        except SignatureError:
            if password is not None or not sys.stdin.isatty():
                raise
            key = parse_secret_key(text, getpass.getpass("Password: "))
        sig = write_signature(args.file, key)
    except SignatureError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot sign {args.file}: {e.strerror or e}")
    print(sig)
    return 0
