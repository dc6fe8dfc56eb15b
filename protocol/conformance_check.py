"""Offline checks of one produced message: the ``envelope`` half of protocol.conformance.

Written from docs/protocol.md, independently of the coordinator's ingest code, so that it can
disagree with it: strict JSON (no duplicate keys, depth <= 32, no NaN), canonical base64,
RFC 8785 envelope and payload bytes, the signature, and the payload schema with the rules a
receiver enforces (exact timestamps, strict integers, period bounds, distinct <= matches,
methods summing to matches, items with item_theta and <= matches, complete coverage, sketch
shape and consistency: HLL, KLL and Theta).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from . import KEY_ROTATION_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE
from .dsse import pae

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1
KEY_ID_RE = re.compile(r"^[0-9a-f]{64}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class CheckFailed(ValueError):
    """One rule of docs/protocol.md is broken; ``code`` is the receiver's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Findings:
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- strict JSON


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects (the top-level container counts 1), scanning
    linearly so that no input can exhaust the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(raw: bytes, code: str, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckFailed(code, f"{what} is not UTF-8") from exc
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise CheckFailed(code, f"{what} nests {depth} deep (limit {MAX_DEPTH})")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as exc:
        raise CheckFailed(code, f"{what} is not strict JSON: {exc}") from exc


def canonical_b64(text: Any, code: str, what: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise CheckFailed(code, f"{what} must be an ASCII base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckFailed(code, f"{what} is not standard padded base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckFailed(code, f"{what} is not canonical base64")
    return raw


# --------------------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class Opened:
    payload_type: str
    keyid: str
    payload: bytes
    signature: bytes


def open_envelope(data: Any) -> Opened:
    bad = "malformed_envelope"
    if not isinstance(data, dict):
        raise CheckFailed(bad, "an envelope is a JSON object")
    if set(data) != {"payload", "payloadType", "signatures"}:
        raise CheckFailed(
            bad, f"envelope members must be payload, payloadType, signatures: {sorted(data)}"
        )
    signatures = data["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise CheckFailed(bad, "exactly one signature")
    (signature,) = signatures
    if not isinstance(signature, dict) or set(signature) != {"keyid", "sig"}:
        raise CheckFailed(bad, "a signature is {keyid, sig}")
    keyid = signature["keyid"]
    if not isinstance(keyid, str) or not KEY_ID_RE.match(keyid):
        raise CheckFailed(bad, "keyid must be 64 lowercase hex digits")
    payload_type = data["payloadType"]
    if not isinstance(payload_type, str):
        raise CheckFailed(bad, "payloadType must be a string")
    payload = canonical_b64(data["payload"], bad, "payload")
    sig = canonical_b64(signature["sig"], bad, "sig")
    return Opened(payload_type, keyid, payload, sig)


def verify_signature(opened: Opened, public_key: VerifyKey, wrong_key: str = "unknown_key") -> None:
    """``wrong_key``: the code when the keyid names another key (a receiver resolving keyids
    in its registry answers unknown_key; the rotation proof must name the new key)."""
    if hashlib.sha256(bytes(public_key)).hexdigest() != opened.keyid:
        raise CheckFailed(wrong_key, "keyid is not the SHA-256 of the expected public key")
    if len(opened.signature) != 64:
        raise CheckFailed("bad_signature", "an Ed25519 signature is 64 bytes")
    try:
        public_key.verify(pae(opened.payload_type, opened.payload), opened.signature)
    except BadSignatureError as exc:
        raise CheckFailed("bad_signature", "the signature does not verify over PAE") from exc


def canonical_payload(payload: bytes) -> dict[str, Any]:
    bad = "malformed_payload"
    data = strict_loads(payload, bad, "payload")
    if not isinstance(data, dict):
        raise CheckFailed(bad, "the payload is a JSON object")
    try:
        canonical = bytes(rfc8785.dumps(data))
    except rfc8785.CanonicalizationError as exc:  # integers beyond 2^53, non-finite floats
        raise CheckFailed(bad, f"payload has no RFC 8785 form: {exc}") from exc
    if canonical != payload:
        raise CheckFailed(bad, "payload is not RFC 8785 canonical JSON")
    return data


# --------------------------------------------------------------------------- payload schema


def _int(value: Any, where: str, low: int = 0, high: int = MAX_SAFE_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckFailed("malformed_payload", f"{where} must be a JSON integer")
    if not low <= value <= high:
        raise CheckFailed("malformed_payload", f"{where} must be in [{low}, {high}]")
    return value


def _text(value: Any, where: str, pattern: str, high: int = 200) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= high or not re.match(pattern, value):
        raise CheckFailed("malformed_payload", f"{where} must be text matching {pattern}")
    return value


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not TIMESTAMP_RE.match(value):
        raise CheckFailed("malformed_payload", f"{where} must be YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise CheckFailed("malformed_payload", f"{where} is not a valid date") from exc


def _members(data: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    if not isinstance(data, dict):
        raise CheckFailed("malformed_payload", f"{where} must be an object")
    missing, extra = required - set(data), set(data) - required - optional
    if missing or extra:
        raise CheckFailed(
            "malformed_payload", f"{where}: missing {sorted(missing)}, unknown {sorted(extra)}"
        )


PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
# The report families (protocol.hashes.ReportFamily): the image hash families and, since
# issue 13, the report-only video families. Spelt out: the check stands apart from the models.
FAMILIES = {
    *("sha256", "sha1", "md5", "pdq", "phash", "dhash"),
    *("video-md5", "video-sha1", "video-sha256", "vpdq", "vpdq-frame"),
}


def _probe(
    probes: list[dict[str, Any]], kind: str, value: Any, count: Any, where: str, **extra: str
) -> None:
    """Queue a sketch for decoding in a child process (protocol.conformance_sketch)."""
    if value is None:
        return
    raw = canonical_b64(value, "malformed_payload", where)
    probes.append(
        {
            "kind": kind,
            "b64": base64.b64encode(raw).decode(),
            "count": count,
            "where": where,
            **extra,
        }
    )


def _decode(probes: list[dict[str, Any]]) -> None:
    from .conformance_sketch import check_sketches

    plain = [{k: v for k, v in p.items() if k != "where"} for p in probes]
    for probe, verdict in zip(probes, check_sketches(plain), strict=True):
        if verdict is not None:
            raise CheckFailed(verdict[0], f"{probe['where']}: {verdict[1]}")


METHODS = {"direct", "dihedral", "trimmed", "region"}
MAX_THETA_CHARS = 400_000  # a trimmed lg_k 15 sketch: at most 349,560 (serial version 3)
CELL_REQUIRED = {"country", "asn", "hoster", "hash_family", "matches", "distinct"}
CELL_OPTIONAL = {"sketch", "methods", "url_theta", "items", "item_theta"}
COVERAGE_MEMBERS = {"country", "asn", "hoster", "pages_fetched", "images_hashed"}


def _check_methods(methods: Any, matches: int, where: str) -> None:
    """The optional cell member (§3): absent or null, or all four counts summing to matches."""
    if methods is None:
        return
    _members(methods, where, METHODS)
    total = sum(_int(methods[name], f"{where}.{name}") for name in sorted(METHODS))
    if total != matches:
        raise CheckFailed("malformed_payload", f"{where} must sum to matches")


def _theta_text(value: Any, where: str) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_THETA_CHARS):
        raise CheckFailed(
            "malformed_payload", f"{where} must be text of at most 400 000 characters"
        )


def _check_items(cell: dict[str, Any], matches: int, where: str) -> int | None:
    """The optional ``items`` and ``item_theta`` (§3): given together or not at all (absent
    and null alike); ``items`` a strict integer no larger than ``matches``."""
    items, item_theta = cell.get("items"), cell.get("item_theta")
    _theta_text(item_theta, f"{where}.item_theta")
    if (items is None) != (item_theta is None):
        raise CheckFailed("malformed_payload", f"{where}: items and item_theta go together")
    if items is None:
        return None
    count = _int(items, f"{where}.items")
    if count > matches:
        raise CheckFailed("malformed_payload", f"{where}: items exceeds matches")
    return count


Place = tuple[Any, Any, Any]


def _check_coverage(rows: Any, cells: list[dict[str, Any]], denominators: dict[str, Any]) -> None:
    """The optional ``coverage`` (§3): when non-empty, one row per hoster, summing to the
    denominators, a row for every cell's hoster, and no hoster with more matches (all
    families) than images hashed."""
    bad = "malformed_payload"
    if not isinstance(rows, list) or len(rows) > 100_000:  # null too: absent is the way
        raise CheckFailed(bad, "coverage must be a list of at most 100 000")
    if not rows:
        return
    images: dict[Place, int] = {}
    pages_total = images_total = 0
    for i, row in enumerate(rows):
        where = f"coverage[{i}]"
        _members(row, where, COVERAGE_MEMBERS)
        _text(row["country"], f"{where}.country", r"^[A-Z]{2}$", 2)
        _int(row["asn"], f"{where}.asn", 0, 2**32 - 1)
        _text(row["hoster"], f"{where}.hoster", PRINTABLE)
        place = (row["country"], row["asn"], row["hoster"])
        if place in images:
            raise CheckFailed(bad, f"{where} repeats the hoster {place}")
        pages_total += _int(row["pages_fetched"], f"{where}.pages_fetched")
        images[place] = _int(row["images_hashed"], f"{where}.images_hashed")
        images_total += images[place]
    if pages_total != denominators["pages_fetched"]:
        raise CheckFailed(bad, "coverage pages_fetched does not sum to denominators")
    if images_total != denominators["images_hashed"]:
        raise CheckFailed(bad, "coverage images_hashed does not sum to denominators")
    matched: dict[Place, int] = {}
    for cell in cells:
        place = (cell["country"], cell["asn"], cell["hoster"])
        matched[place] = matched.get(place, 0) + cell["matches"]
    for place, count in matched.items():
        if place not in images:
            raise CheckFailed(bad, f"cells at {place} have no coverage row")
        if count > images[place]:
            raise CheckFailed(bad, f"matches at {place} exceed its images_hashed")


def check_report(data: dict[str, Any], keyid: str) -> None:
    bad = "malformed_payload"
    if data.get("protocol_version") != 1 or isinstance(data.get("protocol_version"), bool):
        raise CheckFailed("unsupported_version", "protocol_version must be 1")
    _members(
        data,
        "report",
        {
            "protocol_version",
            "report_id",
            "node_id",
            "key_id",
            "sequence",
            "created_at",
            "period",
            "cells",
            "denominators",
        },
        {"attribution_sources", "removals", "coverage", "discovery"},
    )
    _text(data["report_id"], "report_id", r"^[0-9a-f]{32}$", 32)
    _text(data["node_id"], "node_id", r"^[a-z0-9][a-z0-9-]{1,62}$", 63)
    _text(data["key_id"], "key_id", r"^[0-9a-f]{64}$", 64)
    _int(data["sequence"], "sequence", 1)
    created = _timestamp(data["created_at"], "created_at")
    period = data["period"]
    _members(period, "period", {"start", "end"})
    start, end = (
        _timestamp(period["start"], "period.start"),
        _timestamp(period["end"], "period.end"),
    )
    if not (
        end > start
        and timedelta(seconds=60) <= end - start <= timedelta(days=31)
        and start <= created + timedelta(seconds=300)
        and start >= created - timedelta(days=400)
    ):
        raise CheckFailed("bad_period", "period outside its bounds (docs/protocol.md §3)")
    cells = data["cells"]
    if not isinstance(cells, list) or len(cells) > 100_000:
        raise CheckFailed(bad, "cells must be a list of at most 100 000")
    seen: set[tuple[Any, ...]] = set()
    probes: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        where = f"cells[{i}]"
        _members(cell, where, CELL_REQUIRED, CELL_OPTIONAL)
        _text(cell["country"], f"{where}.country", r"^[A-Z]{2}$", 2)
        _int(cell["asn"], f"{where}.asn", 0, 2**32 - 1)
        _text(cell["hoster"], f"{where}.hoster", PRINTABLE)
        if cell["hash_family"] not in FAMILIES:
            raise CheckFailed(bad, f"{where}.hash_family is not a known family")
        matches = _int(cell["matches"], f"{where}.matches")
        distinct = _int(cell["distinct"], f"{where}.distinct")
        if distinct > matches:
            raise CheckFailed(bad, f"{where}: distinct exceeds matches")
        _check_methods(cell.get("methods"), matches, f"{where}.methods")
        _theta_text(cell.get("url_theta"), f"{where}.url_theta")
        items = _check_items(cell, matches, where)
        identity = (cell["country"], cell["asn"], cell["hoster"], cell["hash_family"])
        if identity in seen:
            raise CheckFailed(bad, f"{where} repeats a (country, asn, hoster, hash_family)")
        seen.add(identity)
        _probe(probes, "hll", cell.get("sketch"), distinct, f"{where}.sketch")
        _probe(
            probes,
            "theta",
            cell.get("url_theta"),
            distinct,
            f"{where}.url_theta",
            counted="distinct",
        )
        _probe(
            probes,
            "theta",
            cell.get("item_theta"),
            items,
            f"{where}.item_theta",
            counted="items",
        )
    denominators = data["denominators"]
    _members(denominators, "denominators", {"pages_fetched", "images_hashed", "hosts_seen"})
    for name, value in denominators.items():
        _int(value, f"denominators.{name}")
    _check_coverage(data.get("coverage", []), cells, denominators)
    for i, row in enumerate(data.get("removals") or []):
        if isinstance(row, dict) and row.get("removal_sketch") is not None:
            _probe(
                probes,
                "kll",
                row["removal_sketch"],
                row.get("removed"),
                f"removals[{i}].removal_sketch",
            )
    if data["key_id"] != keyid:
        raise CheckFailed("key_mismatch", "payload key_id differs from the signature's keyid")
    _decode(probes)
    # The optional members and everything else: the reference model.
    from .errors import ProtocolError
    from .models import Report

    try:
        Report.from_payload(rfc8785.dumps(data))
    except ProtocolError as exc:
        raise CheckFailed(exc.code, exc.message) from exc


def check_rotation(data: dict[str, Any], keyid: str) -> VerifyKey:
    bad = "malformed_payload"
    _members(
        data,
        "key rotation",
        {"node_id", "current_key_id", "new_public_key", "created_at", "overlap_seconds"},
    )
    _text(data["node_id"], "node_id", r"^[a-z0-9][a-z0-9-]{1,62}$", 63)
    _text(data["current_key_id"], "current_key_id", r"^[0-9a-f]{64}$", 64)
    _timestamp(data["created_at"], "created_at")
    if data["overlap_seconds"] is not None:
        _int(data["overlap_seconds"], "overlap_seconds", 0, 90 * 86_400)
    raw = canonical_b64(data["new_public_key"], bad, "new_public_key")
    if len(raw) != 32:
        raise CheckFailed(bad, "new_public_key must be 32 bytes")
    if data["current_key_id"] != keyid:
        raise CheckFailed("key_mismatch", "current_key_id differs from the announcement's keyid")
    return VerifyKey(raw)


def check_body(raw: bytes, public_key: VerifyKey | None) -> Findings:
    """Check a request body a node produced: a report envelope or a rotation request."""
    found = Findings()
    try:
        data = strict_loads(raw, "malformed_envelope", "body")
    except CheckFailed as exc:
        found.failed.append((exc.code, exc.message))
        return found
    if _canonical_or_none(data) != raw:
        found.failed.append(("noncanonical_body", "body is not RFC 8785 canonical JSON"))
    else:
        found.passed.append("body is RFC 8785 canonical JSON")
    if isinstance(data, dict) and set(data) == {"announcement", "proof"}:
        _check_rotation_request(data, public_key, found)
    else:
        _check_report_envelope(data, public_key, found)
    return found


def _canonical_or_none(data: Any) -> bytes | None:
    try:
        return bytes(rfc8785.dumps(data))
    except rfc8785.CanonicalizationError:
        return None


def _step(found: Findings, label: str, check: Any) -> Any:
    try:
        result = check()
    except CheckFailed as exc:
        found.failed.append((exc.code, f"{label}: {exc.message}"))
        raise
    found.passed.append(label)
    return result


def _check_report_envelope(data: Any, public_key: VerifyKey | None, found: Findings) -> None:
    try:
        opened: Opened = _step(found, "envelope shape and base64", lambda: open_envelope(data))
        if opened.payload_type != REPORT_PAYLOAD_TYPE:
            raise CheckFailed("unknown_payload_type", f"payloadType {opened.payload_type!r}")
        if public_key is None:
            found.skipped.append("signature (give --public-key)")
        else:
            _step(found, "signature", lambda: verify_signature(opened, public_key))
        payload = _step(found, "payload canonical", lambda: canonical_payload(opened.payload))
        _step(found, "report schema", lambda: check_report(payload, opened.keyid))
    except CheckFailed as exc:
        if not found.failed:
            found.failed.append((exc.code, exc.message))


def _check_rotation_request(
    data: dict[str, Any], public_key: VerifyKey | None, found: Findings
) -> None:
    try:
        announcement: Opened = _step(
            found, "announcement", lambda: open_envelope(data["announcement"])
        )
        proof: Opened = _step(found, "proof", lambda: open_envelope(data["proof"]))
        for opened in (announcement, proof):
            if opened.payload_type != KEY_ROTATION_PAYLOAD_TYPE:
                raise CheckFailed("unknown_payload_type", f"payloadType {opened.payload_type!r}")
        if announcement.payload != proof.payload:
            raise CheckFailed("key_mismatch", "announcement and proof sign different payloads")
        payload = _step(found, "payload canonical", lambda: canonical_payload(proof.payload))
        new_key: VerifyKey = _step(
            found, "rotation schema", lambda: check_rotation(payload, announcement.keyid)
        )
        _step(
            found,
            "proof signature (new key)",
            lambda: verify_signature(proof, new_key, "key_mismatch"),
        )
        if public_key is None:
            found.skipped.append("announcement signature (give --public-key)")
        else:
            _step(
                found, "announcement signature", lambda: verify_signature(announcement, public_key)
            )
    except CheckFailed as exc:
        if not found.failed:
            found.failed.append((exc.code, exc.message))
