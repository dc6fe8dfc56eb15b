"""Node-side key files.

- signing key file: ``NodeKey.seed_b64()`` (the Ed25519 seed, base64), mode 0600;
- federation key file: 32 random bytes, base64, mode 0600. The federation key is shared among
  nodes only (never with the coordinator); it keys the HMAC behind the distinct-count sketches.

Key files are created exclusively: an existing key is never overwritten.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from protocol.keys import NodeKey

FEDERATION_KEY_BYTES = 32


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed, or would be overwritten."""


def write_exclusive(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: never replace a key; 0600 from the first byte (no chmod race).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError as exc:
        raise KeyFileError(f"{what} file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc}") from exc


def create_signing_key(path: Path) -> NodeKey:
    key = NodeKey.generate()
    write_exclusive(path, key.seed_b64())
    return key


def load_signing_key(path: Path) -> NodeKey:
    try:
        return NodeKey.from_seed_b64(_read(path, "signing key"))
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


def create_federation_key(path: Path) -> bytes:
    key = secrets.token_bytes(FEDERATION_KEY_BYTES)
    write_exclusive(path, base64.b64encode(key).decode("ascii"))
    return key


def load_federation_key(path: Path) -> bytes:
    text = _read(path, "federation key")
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise KeyFileError(f"{path}: federation key is not standard base64") from exc
    if len(key) != FEDERATION_KEY_BYTES:
        raise KeyFileError(f"{path}: federation key must be {FEDERATION_KEY_BYTES} bytes")
    return key
