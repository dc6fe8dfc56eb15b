"""List encryption at rest: AES-GCM over list values in the database and the index files.

One 32-byte master key (base64 in a key file, or in ``$LIBRA_NODE_LIST_KEY``) yields, via
HKDF-SHA256, an encryption key and a nonce key. Database values use a *synthetic* nonce,
HMAC(nonce key, plaintext)[:12]: the same value always encrypts to the same ciphertext, so
the unique (family, value) constraint and ``value IN (...)`` lookups keep working on
ciphertext. The only thing that leaks is equality of values, which the unique index needs
anyway. Index files (one blob each) use a random nonce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text, text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.types import TypeDecorator

LIST_KEY_ENV = "LIBRA_NODE_LIST_KEY"
VALUE_PREFIX = "e1:"  # marks an encrypted column value (format version 1)
BLOB_MAGIC = b"LIBRAENC1"
NONCE = 12


class ListKeyError(Exception):
    """The list key is missing, malformed, or does not decrypt the stored lists."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


@dataclass(frozen=True)
class ListKey:
    master: bytes

    def __post_init__(self) -> None:
        if len(self.master) != 32:
            raise ListKeyError("a list key is 32 bytes")

    @property
    def key_id(self) -> str:
        """A short public fingerprint, to tell keys apart in the audit log."""
        return hashlib.sha256(b"libra-list-key-id" + self.master).hexdigest()[:16]

    # Derived once per key (HKDF per value was a third of a 1M-entry index build, issue 17).
    @cached_property
    def _aead(self) -> AESGCM:
        return AESGCM(_derive(self.master, b"libra list values v1"))

    @cached_property
    def _nonce_key(self) -> bytes:
        return _derive(self.master, b"libra list nonces v1")

    def encrypt_value(self, plaintext: str) -> str:
        data = plaintext.encode()
        nonce = hmac.new(self._nonce_key, data, hashlib.sha256).digest()[:NONCE]
        sealed = self._aead.encrypt(nonce, data, b"value")
        return VALUE_PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt_value(self, stored: str) -> str:
        if not stored.startswith(VALUE_PREFIX):
            raise ListKeyError("list value is not encrypted")
        try:
            raw = base64.b64decode(stored[len(VALUE_PREFIX) :], validate=True)
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], b"value").decode()
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise ListKeyError("the list key does not decrypt the stored lists") from exc

    def encrypt_blob(self, data: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        return BLOB_MAGIC + nonce + self._aead.encrypt(nonce, data, context)

    def decrypt_blob(self, blob: bytes, context: bytes) -> bytes:
        if not blob.startswith(BLOB_MAGIC):
            raise ListKeyError("not an encrypted LIBRA file")
        body = memoryview(blob)[len(BLOB_MAGIC) :]  # no copies of a large index file
        try:
            return self._aead.decrypt(body[:NONCE], body[NONCE:], context)
        except InvalidTag as exc:
            raise ListKeyError("the list key does not decrypt this file (wrong key?)") from exc


def _parse(text: str, where: str) -> ListKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise ListKeyError(f"{where}: not base64") from exc
    if len(raw) != 32:
        raise ListKeyError(f"{where}: a list key is 32 bytes, got {len(raw)}")
    return ListKey(raw)


def create_list_key(path: Path) -> ListKey:
    """Write a new random key (mode 0600); refuses to overwrite an existing file."""
    if path.exists():
        raise ListKeyError(f"{path} already exists; refusing to overwrite a list key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ListKey(secrets.token_bytes(32))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(key.master).decode() + "\n")
    return key


def load_list_key(path: Path, env: dict[str, str] | None = None) -> ListKey:
    """The key from ``$LIBRA_NODE_LIST_KEY`` if set, else from ``path``."""
    environ = os.environ if env is None else env
    if environ.get(LIST_KEY_ENV):
        return _parse(environ[LIST_KEY_ENV], f"${LIST_KEY_ENV}")
    if not path.is_file():
        raise ListKeyError(
            f"no list key: set ${LIST_KEY_ENV} or create {path} (`libra node list create-key` "
            "for a node without lists); the node does not start without it"
        )
    return _parse(path.read_text(encoding="ascii"), str(path))


class EncryptedValue(TypeDecorator[str]):
    """A text column stored encrypted with the engine's list key (see ``bind_list_key``).

    The key travels on the engine's dialect because a column type sees only the dialect.
    An engine without a key stores and reads plaintext (unit tests of other components);
    the node itself always opens its database with a key (node.service.open_engine).
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        key: ListKey | None = getattr(dialect, DIALECT_ATTR, None)
        if value is None or key is None:
            return value
        return key.encrypt_value(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not text.startswith(VALUE_PREFIX):
            return text
        key: ListKey | None = getattr(dialect, DIALECT_ATTR, None)
        if key is None:
            raise ListKeyError("the lists are encrypted and no list key was given")
        return key.decrypt_value(text)


DIALECT_ATTR = "libra_list_key"


def bind_list_key(engine: Engine, key: ListKey | None) -> None:
    setattr(engine.dialect, DIALECT_ATTR, key)


def check_list_key(engine: Engine) -> None:
    """Fail fast if the bound key cannot decrypt a stored value (wrong key or plaintext)."""
    key: ListKey | None = getattr(engine.dialect, DIALECT_ATTR, None)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT value FROM list_entry LIMIT 1")).first()
    if row is None or key is None:
        return
    stored = str(row[0])
    if not stored.startswith(VALUE_PREFIX):
        raise ListKeyError(
            "the node database holds unencrypted list values; run `libra node list "
            "rotate-key` to encrypt them"
        )
    key.decrypt_value(stored)
