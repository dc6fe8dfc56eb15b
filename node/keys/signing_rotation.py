"""Rotate this node's Ed25519 signing key with the coordinator (node-initiated).

1. A new key is made in ``<signing key file>.next`` (0600), or the one a failed earlier attempt
   left there is reused, so a retry never registers a second new key.
2. One payload (node id, current key id, new public key, time, wished overlap) is signed with
   the current key (who asks) and with the new key (proof of possession) and posted to
   ``POST /v1/keys/rotate``. The coordinator keeps the old key valid for reports created
   before the end of the overlap window, so reports already in the outbox still go through.
3. Only after the coordinator accepted it does the new key replace the signing key file; the
   old key is kept next to it as ``<signing key file>.previous-<key id prefix>`` (0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from node.federation.enroll import EnrollError, check_answer, coordinator_client
from node.keys.files import KeyFileError, create_signing_key, load_signing_key, write_exclusive
from protocol import KEY_ROTATION_PAYLOAD_TYPE
from protocol.canonical import canonical_json
from protocol.dsse import sign
from protocol.keys import NodeKey
from protocol.models import KeyRotation

PENDING_SUFFIX = ".next"


class RotationError(Exception):
    """The coordinator refused the rotation or could not be reached; nothing was replaced."""


class _Answer(BaseModel):
    node_id: str
    key_id: str
    status: str
    previous_valid_until: str | None


@dataclass(frozen=True)
class RotationResult:
    old_key_id: str
    new_key_id: str
    status: str  # rotated | unchanged (an earlier attempt had already registered it)
    old_valid_until: str | None
    retired_key_file: Path


def pending_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + PENDING_SUFFIX)


def rotation_request(
    node_id: str,
    current: NodeKey,
    new: NodeKey,
    now: datetime,
    overlap: timedelta | None = None,
) -> dict[str, object]:
    payload = KeyRotation(
        node_id=node_id,
        current_key_id=current.key_id,
        new_public_key=new.public_key_b64,
        created_at=now,
        overlap_seconds=None if overlap is None else int(overlap.total_seconds()),
    ).to_payload()
    return {
        "announcement": sign(payload, KEY_ROTATION_PAYLOAD_TYPE, current).to_json(),
        "proof": sign(payload, KEY_ROTATION_PAYLOAD_TYPE, new).to_json(),
    }


def rotate_signing_key(
    coordinator_url: str,
    key_path: Path,
    node_id: str,
    *,
    now: datetime,
    overlap: timedelta | None = None,
    transport: httpx.BaseTransport | None = None,
) -> RotationResult:
    current = load_signing_key(key_path)
    pending = pending_key_path(key_path)
    new = load_signing_key(pending) if pending.exists() else create_signing_key(pending)
    if new.key_id == current.key_id:
        raise KeyFileError(f"{pending} holds the current key; remove it and retry")
    body = rotation_request(node_id, current, new, now, overlap)
    with coordinator_client(coordinator_url, None, transport) as client:
        try:
            # RFC 8785, the wire form of docs/protocol.md §2 and §6.
            response = client.post(
                "/v1/keys/rotate",
                content=canonical_json(body),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise RotationError(f"cannot reach the coordinator: {exc}") from exc
    try:
        check_answer(response)
        answer = _Answer.model_validate(response.json())
    except EnrollError as exc:
        raise RotationError(str(exc)) from exc
    except (ValueError, ValidationError) as exc:
        raise RotationError("the coordinator's rotation answer is malformed") from exc
    if answer.key_id != new.key_id:
        raise RotationError(f"the coordinator registered {answer.key_id}, not {new.key_id}")
    retired = key_path.with_name(f"{key_path.name}.previous-{current.key_id[:16]}")
    if not retired.exists():
        write_exclusive(retired, current.seed_b64())
    os.replace(pending, key_path)  # atomic: the file always holds one whole key
    return RotationResult(
        old_key_id=current.key_id,
        new_key_id=new.key_id,
        status=answer.status,
        old_valid_until=answer.previous_valid_until,
        retired_key_file=retired,
    )
