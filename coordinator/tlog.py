"""The coordinator's transparency log of accepted reports and signed picture snapshots.

* Appending: ingest adds a leaf (digests only, protocol/tlog_leaf.py) in the report's own
  transaction, so a report is accepted if and only if its leaf is queued; snapshots add theirs
  when signed. A leaf hash is unique: the same report or snapshot is never appended twice.
* Sequencing: pending leaves get consecutive indexes under a lock on the one ``tlog_state`` row,
  in arrival (``id``) order; this runs before every checkpoint, so the next checkpoint includes
  every report accepted before it was requested (the "merge delay" is one checkpoint).
* Checkpoints: C2SP tlog-checkpoint notes signed with the coordinator's snapshot key, one per
  tree size, served with every witness cosignature received for that size.
* Proofs are computed from the stored leaf hashes (O(size) per request: fine for the report
  volumes of a federation; C2SP tlog-tiles would make them O(log size), see docs).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from nacl.signing import VerifyKey
from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from protocol.dsse import Envelope
from protocol.errors import BadSignature, ProtocolError
from protocol.keys import NodeKey, decode_public_key, key_id
from protocol.tlog import (
    InvalidProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_list_subtrees,
    root_from_leaf_hashes,
    verify_inclusion,
)
from protocol.tlog_leaf import report_leaf, snapshot_leaf
from protocol.tlog_note import (
    Checkpoint,
    MalformedNote,
    Note,
    NoteSignature,
    parse_checkpoint,
    parse_note,
    sign_note,
    verify_cosignature,
    verify_note,
)

from .errors import InvalidRequest, NotFound
from .models import (
    NodeKeyRow,
    NodeRow,
    NodeStatus,
    TlogCheckpointRow,
    TlogCosignatureRow,
    TlogLeafRow,
    TlogStateRow,
)

ORIGIN_PREFIX = "libra.coordinator/"
WITNESS_PREFIX = "libra.node/"
MAX_COSIGNATURE_SKEW_S = 600  # tlog-cosignature: verifiers MAY reject future timestamps


def log_origin(key: NodeKey) -> str:
    """The log's origin line and key name: unique per coordinator key, no configuration."""
    return origin_of(key.verify_key)


def origin_of(verify_key: VerifyKey) -> str:
    return ORIGIN_PREFIX + key_id(verify_key)[:16]


def witness_name(node_id: str) -> str:
    """The cosigner name of a node: its key is the node's registered Ed25519 key."""
    return WITNESS_PREFIX + node_id


@dataclass(frozen=True)
class LeafInput:
    node_id: str
    report_id: str
    payload_sha256: str


def append_reports(session: Session, reports: list[LeafInput], now: datetime) -> None:
    """Queue one leaf per newly accepted report, in the caller's transaction (no commit).

    Ingest only calls this for reports it is storing for the first time (report ids are
    unique), so a leaf is never queued twice for one report.
    """
    if not reports:
        return
    rows = []
    for item in reports:
        data = report_leaf(item.node_id, item.report_id, item.payload_sha256)
        rows.append(
            {
                "leaf_hash": leaf_hash(data),
                "kind": "report",
                "data": data.decode(),
                "idx": None,
                "created_at": now,
            }
        )
    session.connection().execute(insert(TlogLeafRow), rows)


def append_snapshot(session: Session, payload_sha256: str, now: datetime) -> bytes:
    """Queue the leaf of a signed snapshot unless the same picture bytes are already logged;
    commits. Returns the leaf hash (a viewer asks for its inclusion proof with it)."""
    data = snapshot_leaf(payload_sha256)
    digest = leaf_hash(data)
    exists = session.exec(
        select(TlogLeafRow.id).where(col(TlogLeafRow.leaf_hash) == digest)
    ).first()
    if exists is None:
        session.add(
            TlogLeafRow(leaf_hash=digest, kind="snapshot", data=data.decode(), created_at=now)
        )
        session.commit()
    return digest


def log_snapshot(session: Session, envelope: Envelope, now: datetime) -> bytes:
    """Log a signed picture snapshot by the SHA-256 of its DSSE payload; commits."""
    return append_snapshot(session, hashlib.sha256(envelope.payload_bytes()).hexdigest(), now)


def sequence(session: Session) -> int:
    """Give pending leaves consecutive indexes; returns the new tree size (no commit)."""
    state = session.exec(select(TlogStateRow).where(TlogStateRow.id == 1).with_for_update()).one()
    pending = session.exec(
        select(TlogLeafRow.id).where(col(TlogLeafRow.idx).is_(None)).order_by(col(TlogLeafRow.id))
    ).all()
    if pending:
        table = TlogLeafRow.__table__  # type: ignore[attr-defined]
        session.connection().execute(
            update(table).where(table.c.id == bindparam("row")).values(idx=bindparam("index")),
            [{"row": row_id, "index": state.size + i} for i, row_id in enumerate(pending)],
        )
        state.size += len(pending)
        session.add(state)
        session.flush()
    return state.size


def leaf_hashes(session: Session, size: int) -> list[bytes]:
    rows = session.exec(
        select(TlogLeafRow.leaf_hash)
        .where(col(TlogLeafRow.idx) < size)
        .order_by(col(TlogLeafRow.idx))
    ).all()
    return [bytes(h) for h in rows]


def current_size(session: Session) -> int:
    state = session.get(TlogStateRow, 1)
    return 0 if state is None else state.size


def latest_checkpoint(session: Session, key: NodeKey, now: datetime) -> TlogCheckpointRow:
    """Sequence pending leaves and return the signed checkpoint of the current size; commits."""
    size = sequence(session)
    row = session.get(TlogCheckpointRow, size)
    if row is None:
        hashes = leaf_hashes(session, size)
        if len(hashes) != size:  # a gap would make every proof wrong: never serve one
            raise RuntimeError(f"transparency log has {len(hashes)} leaves for size {size}")
        root = root_from_leaf_hashes(hashes)
        origin = log_origin(key)
        body = Checkpoint(origin, size, root).body()
        note = Note(body, (sign_note(body, origin, key.signing_key),))
        row = TlogCheckpointRow(size=size, root=root, note=note.render(), created_at=now)
        session.add(row)
    session.commit()
    return row


def render_with_cosignatures(session: Session, row: TlogCheckpointRow) -> str:
    """The checkpoint note with every cosignature stored for its size (by node id)."""
    lines = session.exec(
        select(TlogCosignatureRow.line)
        .where(TlogCosignatureRow.size == row.size)
        .order_by(col(TlogCosignatureRow.node_id))
    ).all()
    return row.note + "".join(f"{line}\n" for line in lines)


def _checked_size(session: Session, size: int, what: str) -> None:
    current = current_size(session)
    if not 0 <= size <= current:
        raise InvalidRequest(f"{what} {size} is outside the log (its size is {current})")


def prove_inclusion(session: Session, digest: bytes, tree_size: int) -> tuple[int, list[bytes]]:
    _checked_size(session, tree_size, "tree_size")
    index = session.exec(
        select(TlogLeafRow.idx).where(col(TlogLeafRow.leaf_hash) == digest)
    ).first()
    if index is None:
        raise NotFound("no leaf with that hash is in the log")
    if index >= tree_size:
        raise NotFound(f"the leaf is at index {index}, not in a tree of size {tree_size}")
    return index, inclusion_proof(
        index, tree_size, leaf_list_subtrees(leaf_hashes(session, tree_size))
    )


def prove_consistency(session: Session, first: int, second: int) -> list[bytes]:
    _checked_size(session, second, "second")
    if not 0 <= first <= second:
        raise InvalidRequest("first must be between 0 and second")
    return consistency_proof(first, second, leaf_list_subtrees(leaf_hashes(session, second)))


def add_cosignature(session: Session, node_id: str, raw_note: str, now: datetime) -> int:
    """Store a node's cosignature of a checkpoint this log signed; returns the tree size.

    The note must carry exactly the text of a stored checkpoint and a cosignature/v1 line named
    ``libra.node/<node_id>`` that verifies with one of the node's registered, unrevoked keys.
    """
    try:
        note = parse_note(raw_note)
    except MalformedNote as exc:
        raise InvalidRequest(f"not a signed note: {exc.message}") from exc
    try:
        checkpoint = parse_checkpoint(note.text)
    except MalformedNote as exc:
        raise InvalidRequest(f"note is not a checkpoint: {exc.message}") from exc
    stored = session.get(TlogCheckpointRow, checkpoint.size)
    if stored is None or not stored.note.startswith(note.text + "\n"):
        raise NotFound("this log signed no checkpoint with that text")
    name = witness_name(node_id)
    lines = [sig for sig in note.signatures if sig.name == name]
    if len(lines) != 1:
        raise InvalidRequest(f"the note needs exactly one cosignature named {name}")
    timestamp = _verify_with_node_keys(session, node_id, lines[0], note.text, now)
    if timestamp > now.timestamp() + MAX_COSIGNATURE_SKEW_S:
        raise InvalidRequest("cosignature timestamp is in the future")
    existing = session.get(TlogCosignatureRow, (stored.size, node_id))
    line = lines[0].line().rstrip("\n")
    if existing is None:
        session.add(
            TlogCosignatureRow(
                size=stored.size,
                node_id=node_id,
                line=line,
                timestamp=timestamp,
                received_at=now,
            )
        )
    elif timestamp > existing.timestamp:
        existing.line, existing.timestamp, existing.received_at = line, timestamp, now
        session.add(existing)
    session.commit()
    return stored.size


def _verify_with_node_keys(
    session: Session, node_id: str, sig: NoteSignature, text: str, now: datetime
) -> int:
    node = session.get(NodeRow, node_id)
    if node is None or node.status != NodeStatus.ACTIVE:
        raise BadSignature(f"node {node_id} is not an active member")
    keys = session.exec(select(NodeKeyRow).where(NodeKeyRow.node_id == node_id)).all()
    failure: ProtocolError = BadSignature(f"no registered key of {node_id} made that cosignature")
    for key in keys:
        if key.revoked_at is not None and key.revoked_at <= now:
            continue
        try:
            return verify_cosignature(sig, text, decode_public_key(key.public_key))
        except BadSignature as exc:
            failure = exc
    raise failure


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verify_snapshot_in_log(
    payload: bytes, verify_key: VerifyKey, checkpoint_note: str, proof_json: str
) -> tuple[int, int]:
    """Offline: the snapshot payload is leaf ``i`` of the signed checkpoint; returns (i, size).

    ``proof_json`` is the body of ``GET /v1/log/proof/inclusion`` for the snapshot's leaf hash
    (the ``Libra-Log-Leaf-Hash`` header of the snapshot response) at the checkpoint's size.
    Raises a ProtocolError subclass (or ValueError for a malformed proof file).
    """
    note = parse_note(checkpoint_note)
    origin = origin_of(verify_key)
    verify_note(note, origin, verify_key)
    checkpoint = parse_checkpoint(note.text)
    data = json.loads(proof_json)
    if not isinstance(data, dict) or data.get("tree_size") != checkpoint.size:
        raise ValueError(f"the proof is not for the checkpoint's size {checkpoint.size}")
    index = data.get("leaf_index")
    proof_items = data.get("proof")
    if not isinstance(index, int) or not isinstance(proof_items, list):
        raise ValueError("proof file needs leaf_index and proof (GET /v1/log/proof/inclusion)")
    proof = [base64.b64decode(str(p), validate=True) for p in proof_items]
    leaf = leaf_hash(snapshot_leaf(hashlib.sha256(payload).hexdigest()))
    try:
        verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root)
    except InvalidProof as exc:
        raise InvalidProof(f"the snapshot is not in the log: {exc.message}") from exc
    return index, checkpoint.size
