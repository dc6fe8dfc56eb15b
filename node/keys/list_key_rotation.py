"""Rotate the list key: re-encrypt every stored list value and the index under a new key.

All values are rewritten in one database transaction (old ciphertext -> plaintext in memory
-> new ciphertext), so a failure leaves everything under the old key. Only then is the new
key put in place; the old key file is renamed, not deleted, so a restore of an older backup
remains readable until the operator removes it. A database still holding plaintext values
(made before encryption) is encrypted by the same command.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from node import audit
from node.config import NodeSettings
from node.db import make_engine
from node.keys.list_encryption import (
    LIST_KEY_ENV,
    VALUE_PREFIX,
    ListKey,
    ListKeyError,
    create_list_key,
    load_list_key,
)
from node.matching.index import persist


@dataclass(frozen=True)
class Rotation:
    values: int
    old_key_id: str
    new_key_id: str
    key_file: Path
    retired_key_file: Path | None


def rotate_list_key(
    settings: NodeSettings, new_key_file: Path | None = None, *, reason: str = ""
) -> Rotation:
    key_path = settings.list_key_path
    try:
        old: ListKey | None = load_list_key(key_path)
    except ListKeyError:
        old = None  # first encryption of a plaintext database
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staged = key_path.with_name(key_path.name + f".new-{stamp}")
    new = load_list_key(new_key_file, env={}) if new_key_file else create_list_key(staged)
    if old is not None and old.master == new.master:
        raise ListKeyError("the new key is the current key")
    engine = make_engine(settings.effective_database_url)  # raw values, no key bound
    try:
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT id, value FROM list_entry")).all()
            for entry_id, stored in rows:
                stored = str(stored)
                if stored.startswith(VALUE_PREFIX):
                    if old is None:
                        raise ListKeyError("the lists are encrypted but the current key is missing")
                    plain = old.decrypt_value(stored)
                else:
                    plain = stored
                conn.execute(
                    text("UPDATE list_entry SET value = :v WHERE id = :i"),
                    {"v": new.encrypt_value(plain), "i": entry_id},
                )
        retired: Path | None = None
        if key_path.exists():
            retired = key_path.with_name(key_path.name + f".retired-{stamp}")
            os.replace(key_path, retired)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(new.master).decode() + "\n")
        staged.unlink(missing_ok=True)
    finally:
        engine.dispose()
    keyed = make_engine(settings.effective_database_url, new)
    try:
        # The index file is a cache: rewrite it under the new key straight away.
        (settings.index_dir / persist.INDEX_FILE).unlink(missing_ok=True)
        persist.current(keyed, settings.index_dir, new)
        audit.log(
            keyed,
            "list.key.rotate",
            subject="list_key",
            reason=reason,
            details={
                "old_key_id": old.key_id if old else None,
                "new_key_id": new.key_id,
                "values": len(rows),
                "env_var_in_use": bool(os.environ.get(LIST_KEY_ENV)),
            },
        )
    finally:
        keyed.dispose()
    return Rotation(len(rows), old.key_id if old else "none", new.key_id, key_path, retired)
