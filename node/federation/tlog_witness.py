"""The node as a witness of the coordinator's transparency log (issue 15).

* The outbox records every report the coordinator acknowledged (:func:`record_delivery`): its id
  and the SHA-256 of the signed payload, i.e. exactly what the log leaf holds.
* :func:`verify_log` fetches the newest checkpoint, checks the log's signature (key pinned on
  first use), checks it extends the last checkpoint this node verified (RFC 9162 consistency),
  checks every delivered report not yet proven is included, stores the checkpoint and then
  cosigns it (C2SP cosignature/v1 with the node's registered Ed25519 key) and posts the
  cosignature. A coordinator that rewrites or forks history fails here: "split view".
* :func:`compare_with_peer`: two witnesses exchange their verified checkpoints out of band (the
  coordinator is the party under suspicion, so it must not carry that exchange). Equal sizes
  must have equal roots; otherwise the coordinator must prove the smaller one is a prefix of
  the larger. A coordinator that showed the two nodes different histories cannot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from nacl.signing import VerifyKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.models import LogWitnessState, OutboxItem, SentReport
from protocol.errors import ProtocolError
from protocol.keys import NodeKey, decode_public_key
from protocol.tlog import InvalidProof, verify_consistency, verify_inclusion
from protocol.tlog_leaf import report_leaf_hash
from protocol.tlog_note import Checkpoint, Note, cosign, parse_checkpoint, parse_note, verify_note

KEY_PATH = "/v1/coordinator/key"
CHECKPOINT_PATH = "/v1/log/checkpoint"
INCLUSION_PATH = "/v1/log/proof/inclusion"
CONSISTENCY_PATH = "/v1/log/proof/consistency"
COSIGNATURE_PATH = "/v1/log/cosignatures"
WITNESS_PREFIX = "libra.node/"


class LogVerifyError(Exception):
    """The log failed a check (or could not be checked); the message says which."""


@dataclass(frozen=True)
class VerifyResult:
    previous_size: int | None
    size: int
    root_b64: str
    newly_proven: int
    cosigned: bool


def record_delivery(session: Session, item: OutboxItem) -> None:
    """Remember an acknowledged report (called in the outbox's delete transaction)."""
    envelope: dict[str, Any] = json.loads(item.envelope)
    payload = base64.b64decode(envelope["payload"], validate=True)
    node_id = json.loads(payload)["node_id"]
    if session.get(SentReport, item.report_id) is None:
        session.add(
            SentReport(
                report_id=item.report_id,
                node_id=node_id,
                payload_sha256=hashlib.sha256(payload).hexdigest(),
            )
        )


@contextmanager
def _client(coordinator_url: str, client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The caller's client (tests: an in-process app) or a new one for the coordinator URL."""
    if client is not None:
        yield client
        return
    with httpx.Client(base_url=coordinator_url, timeout=30.0, follow_redirects=False) as own:
        yield own


def _get(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    try:
        response = client.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise LogVerifyError(f"cannot reach the coordinator: {exc}") from exc
    return response


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise LogVerifyError(f"{what}: coordinator answered {response.status_code}")
    try:
        data: dict[str, Any] = response.json()
    except ValueError as exc:
        raise LogVerifyError(f"{what}: not JSON") from exc
    return data


def _proof(data: dict[str, Any], what: str) -> list[bytes]:
    try:
        return [base64.b64decode(p, validate=True) for p in data["proof"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise LogVerifyError(f"{what}: malformed proof") from exc


def fetch_checkpoint(
    client: httpx.Client, state: LogWitnessState | None
) -> tuple[Note, Checkpoint, str]:
    """The coordinator's newest checkpoint, its log signature verified with the pinned key."""
    if state is None:  # trust on first use; pinned from then on
        key_b64 = str(_json(_get(client, KEY_PATH), "coordinator key").get("public_key", ""))
    else:
        key_b64 = state.public_key
    response = _get(client, CHECKPOINT_PATH)
    if response.status_code != 200:
        raise LogVerifyError(f"checkpoint: coordinator answered {response.status_code}")
    try:
        key = decode_public_key(key_b64)
        note = parse_note(response.text)
        checkpoint = parse_checkpoint(note.text)
        origin = state.origin if state is not None else checkpoint.origin
        if checkpoint.origin != origin:
            raise LogVerifyError(f"checkpoint is for log {checkpoint.origin}, not {origin}")
        verify_note(note, origin, key)
    except (ProtocolError, ValueError) as exc:
        raise LogVerifyError(f"checkpoint does not verify: {exc}") from exc
    return note, checkpoint, key_b64


def check_consistency(
    client: httpx.Client, first: int, first_root: bytes, second: int, second_root: bytes
) -> None:
    """Raise "split view" unless the coordinator proves tree ``first`` prefixes ``second``."""
    if second < first:
        raise LogVerifyError(
            f"split view: the log shrank from {first} to {second} entries (a rewritten history)"
        )
    proof: list[bytes] = []
    if 0 < first < second:
        response = _get(client, CONSISTENCY_PATH, first=first, second=second)
        if 400 <= response.status_code < 500:
            # Both sizes carry the log's signature: refusing to link them is itself the proof.
            raise LogVerifyError(
                f"split view: the coordinator cannot prove that its signed checkpoint of size "
                f"{first} is a prefix of its signed checkpoint of size {second} "
                f"(answered {response.status_code})"
            )
        proof = _proof(_json(response, "consistency proof"), "consistency proof")
    try:
        verify_consistency(first, second, first_root, second_root, proof)
    except InvalidProof as exc:
        raise LogVerifyError(
            f"split view: checkpoint of size {second} does not extend the one of size {first} "
            f"this node saw ({exc.message})"
        ) from exc


def verify_log(
    engine: Engine,
    coordinator_url: str,
    signing_key: NodeKey,
    node_id: str,
    now: datetime,
    *,
    client: httpx.Client | None = None,
    cosign_checkpoint: bool = True,
) -> VerifyResult:
    """Verify the newest checkpoint against this node's history, then cosign it."""
    with _client(coordinator_url, client) as http, Session(engine) as session:
        state = session.get(LogWitnessState, 1)
        # The reports to prove are read BEFORE the checkpoint is fetched: each was acknowledged
        # (its leaf queued with it) before the coordinator sequenced this checkpoint, so it must
        # be inside. A report delivered meanwhile (a concurrent `report`) waits for the next run.
        pending = session.exec(
            select(SentReport).where(col(SentReport.verified_size).is_(None))
        ).all()
        note, checkpoint, key_b64 = fetch_checkpoint(http, state)
        previous = None
        if state is not None:
            previous = state.size
            check_consistency(
                http, state.size, base64.b64decode(state.root), checkpoint.size, checkpoint.root
            )
        for sent in pending:
            leaf = report_leaf_hash(sent.node_id, sent.report_id, sent.payload_sha256)
            response = _get(http, INCLUSION_PATH, leaf_hash=leaf.hex(), tree_size=checkpoint.size)
            if response.status_code == 404 or checkpoint.size == 0:
                raise LogVerifyError(
                    f"report {sent.report_id} missing from the log (size {checkpoint.size}) "
                    "although the coordinator acknowledged it"
                )
            data = _json(response, f"inclusion proof of report {sent.report_id}")
            try:
                verify_inclusion(
                    leaf,
                    int(data["leaf_index"]),
                    checkpoint.size,
                    _proof(data, "inclusion proof"),
                    checkpoint.root,
                )
            except (InvalidProof, KeyError, TypeError, ValueError) as exc:
                raise LogVerifyError(
                    f"report {sent.report_id} missing from the log: its inclusion proof fails"
                ) from exc
            sent.verified_size = checkpoint.size
            session.add(sent)
        root_b64 = base64.b64encode(checkpoint.root).decode()
        if state is None:
            state = LogWitnessState(
                origin=checkpoint.origin, public_key=key_b64, size=0, root="", checkpoint=""
            )
        state.size, state.root, state.checkpoint, state.verified_at = (
            checkpoint.size,
            root_b64,
            note.render(),
            now,
        )
        session.add(state)
        session.commit()
        if cosign_checkpoint:
            post_cosignature(http, note, signing_key, node_id, now)
    return VerifyResult(previous, checkpoint.size, root_b64, len(pending), cosign_checkpoint)


def post_cosignature(
    client: httpx.Client, note: Note, signing_key: NodeKey, node_id: str, now: datetime
) -> None:
    sig = cosign(note.text, WITNESS_PREFIX + node_id, signing_key.signing_key, int(now.timestamp()))
    body = Note(note.text, (note.signatures[0], sig)).render()
    try:
        response = client.post(
            COSIGNATURE_PATH, content=body.encode(), headers={"content-type": "text/plain"}
        )
    except httpx.HTTPError as exc:
        raise LogVerifyError(f"cannot post the cosignature: {exc}") from exc
    if response.status_code != 200:
        raise LogVerifyError(
            f"coordinator refused the cosignature ({response.status_code}): {response.text[:200]}"
        )


def last_checkpoint(engine: Engine) -> str | None:
    """The last checkpoint note this node verified (to hand to another witness)."""
    with Session(engine) as session:
        state = session.get(LogWitnessState, 1)
        return None if state is None else state.checkpoint


def compare_with_peer(
    engine: Engine,
    coordinator_url: str,
    peer_note: str,
    *,
    client: httpx.Client | None = None,
) -> int:
    """Check another witness's verified checkpoint against ours; returns the larger size.

    Both must carry the log's signature with the key this node pinned; then they must describe
    one history: equal sizes need equal roots, otherwise the coordinator must prove the smaller
    is a prefix of the larger. Either failure is a split view, with two signed checkpoints as
    evidence.
    """
    with Session(engine) as session:
        state = session.get(LogWitnessState, 1)
    if state is None:
        raise LogVerifyError("no checkpoint verified yet: run `libra node log verify` first")
    try:
        note = parse_note(peer_note)
        theirs = parse_checkpoint(note.text)
        if theirs.origin != state.origin:
            raise LogVerifyError(f"peer checkpoint is for log {theirs.origin}, not {state.origin}")
        verify_note(note, state.origin, VerifyKey(base64.b64decode(state.public_key)))
    except ProtocolError as exc:
        raise LogVerifyError(f"peer checkpoint does not verify: {exc}") from exc
    ours = Checkpoint(state.origin, state.size, base64.b64decode(state.root))
    if ours.size == theirs.size:
        if ours.root != theirs.root:
            raise LogVerifyError(
                f"split view: the coordinator signed two different trees of size {ours.size}"
            )
        return ours.size
    small, large = sorted((ours, theirs), key=lambda c: c.size)
    with _client(coordinator_url, client) as http:
        check_consistency(http, small.size, small.root, large.size, large.root)
    return large.size
