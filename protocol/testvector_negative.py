"""Negative test vectors: requests a coordinator must refuse, each with its status and code.

Each case is built from the valid vector report (or rotation request) by one defect, signed
with the fixed vector keys; ``body_template`` (protocol.vector_template) lets the conformance
checker replay the same defect with keys registered at a live coordinator. Expected codes are
those of docs/protocol.md §1 (strict parsing, canonical payloads, period bounds, sequence
gap).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import KEY_ROTATION_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE
from .testvector import (
    NEGATIVE_DIR,
    hll_item,
    hll_sketch_b64,
    rotation_payload,
    sketch_urls,
    vector_keys,
)
from .testvector_cases import JSON_TYPE, Payload
from .testvector_cases import Builder as _Builder
from .testvector_cases import base_report as _base_report
from .testvector_cases import case_report_id as _report_id
from .testvector_cases import expected as _expected
from .testvector_cases import jcs as _jcs
from .testvector_cases import set_cell as _set_cell
from .testvector_discovery import discovery_cases
from .testvector_negative_coverage import coverage_cases
from .testvector_video import video_cases
from .vector_template import envelope_template

BATCH = "/v1/reports/batch"
ROTATE = "/v1/keys/rotate"
ENROLL = "/v1/enroll"
SEQUENCE_GAP_LIMIT = 1_000_000


def _envelope_with(payload_type: str, **parts: str) -> str:
    """An envelope template with some members' text replaced (still key-sorted)."""
    members = {
        "payload": '"${payload}"',
        "payloadType": json.dumps(payload_type),
        "signatures": '[{"keyid":"${keyid:current}","sig":"${sig:current}"}]',
    }
    members.update(parts)
    return "{" + ",".join(f'"{k}":{v}' for k, v in members.items()) + "}"


def _signature(keyid: str = "${keyid:current}", sig: str = "${sig:current}") -> str:
    return '[{"keyid":"' + keyid + '","sig":"' + sig + '"}]'


def _envelope_cases(b: _Builder) -> None:
    bad_env = _expected(400, "malformed_envelope")
    payload = _jcs(b.report("envelope"))
    t = REPORT_PAYLOAD_TYPE
    b.add(
        "envelope-not-json",
        "the body is cut short",
        bad_env,
        payload,
        template='{"payload":"${payload}","payloadType":',
    )
    b.add(
        "envelope-not-object",
        "the body is a JSON array",
        bad_env,
        payload,
        template="[" + envelope_template(t) + "]",
    )
    b.add(
        "envelope-duplicate-key",
        "payloadType appears twice (the envelope's duplicate "
        "keys are refused, whatever the values)",
        bad_env,
        payload,
        template=_envelope_with(t, payloadType=f'"{t}","payloadType":"{t}"'),
    )
    b.add(
        "envelope-depth-33",
        "an extra member nested 32 arrays deep: the document's depth "
        "is 33 (the top-level object counts 1)",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature() + ',"x":' + "[" * 32 + "]" * 32),
    )
    b.add(
        "envelope-depth-10000",
        "arrays nested 10 000 deep (must not crash the parser)",
        bad_env,
        payload,
        template="[" * 10_000 + "]" * 10_000,
    )
    b.add(
        "envelope-nan",
        "a NaN literal in the envelope",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature() + ',"x":NaN'),
    )
    b.add(
        "envelope-extra-member",
        "an unknown envelope member",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature() + ',"x":1'),
    )
    b.add(
        "envelope-missing-payload-type",
        "payloadType is missing",
        bad_env,
        payload,
        template='{"payload":"${payload}","signatures":' + _signature() + "}",
    )
    b.add(
        "envelope-two-signatures",
        "two signatures (exactly one is allowed)",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature()[:-1] + "," + _signature()[1:]),
    )
    b.add(
        "envelope-no-signature",
        "an empty signature list",
        bad_env,
        payload,
        template=_envelope_with(t, signatures="[]"),
    )
    b.add(
        "envelope-keyid-uppercase",
        "the keyid in upper-case hex",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature(keyid="${KEYID:current}")),
    )
    b.add(
        "envelope-payload-unpadded",
        "payload base64 without its '=' padding",
        bad_env,
        payload,
        template=_envelope_with(t, payload='"${payload_nopad}"'),
    )
    b.add(
        "envelope-payload-whitespace",
        "payload base64 broken into 76-character lines",
        bad_env,
        payload,
        template=_envelope_with(t, payload='"${payload_ws}"'),
    )
    # A run of six '?' (0x3f) encodes to a '/' in standard base64 at any offset, so the URL-safe
    # form differs from the standard one even after the checker re-binds the payload.
    slashed = _jcs(b.report("urlsafe", _set_cell("hoster", "Hoster ??????")))
    b.add(
        "envelope-payload-urlsafe",
        "payload in the URL-safe base64 alphabet ('_' for '/')",
        bad_env,
        slashed,
        template=_envelope_with(t, payload='"${payload_urlsafe}"'),
    )
    b.add(
        "envelope-payload-noncanonical-base64",
        "payload base64 whose unused trailing bits are set (decodes, but re-encodes differently)",
        bad_env,
        payload,
        template=_envelope_with(t, payload='"${payload_noncanon}"'),
    )
    b.add(
        "envelope-sig-unpadded",
        "signature base64 without its '==' padding",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature(sig="${sig_nopad:current}")),
    )
    b.add(
        "envelope-sig-noncanonical-base64",
        "signature base64 with unused bits set",
        bad_env,
        payload,
        template=_envelope_with(t, signatures=_signature(sig="${sig_noncanon:current}")),
    )
    b.add(
        "envelope-unknown-payload-type",
        "a payloadType this receiver does not speak (signed over that type)",
        _expected(400, "unknown_payload_type"),
        payload,
        payload_type="application/vnd.libra.report+json; version=2",
    )
    b.add(
        "envelope-unknown-key",
        "signed by a key registered nowhere",
        _expected(401, "unknown_key"),
        payload,
        template=_envelope_with(t, signatures=_signature("${keyid:other}", "${sig:other}")),
    )
    b.add(
        "envelope-bad-signature",
        "one bit of the signature flipped",
        _expected(401, "bad_signature"),
        payload,
        template=_envelope_with(t, signatures=_signature(sig="${sig_flipped:current}")),
    )
    b.add(
        "envelope-short-signature",
        "a signature of 63 bytes",
        _expected(401, "bad_signature"),
        payload,
        template=_envelope_with(t, signatures=_signature(sig="${sig_short:current}")),
    )
    b.add(
        "content-type-text-plain",
        "a valid envelope sent as text/plain",
        _expected(415, "unsupported_media_type"),
        _jcs(b.report("content-type")),
        content_type="text/plain",
    )
    b.add(
        "content-type-latin1",
        "a valid envelope declared as application/json in another charset",
        _expected(415, "unsupported_media_type"),
        _jcs(b.report("content-type-latin1")),
        content_type="application/json; charset=iso-8859-1",
    )


def _shift_period(start: str, end: str) -> Callable[[Payload], None]:
    def edit(data: Payload) -> None:
        data["period"] = {"start": start, "end": end}

    return edit


def _payload_cases(b: _Builder) -> None:
    bad = _expected(422, "malformed_payload")
    bad_period = _expected(422, "bad_period")
    canonical = _jcs(b.report("x"))

    def text_case(
        name: str, description: str, expected: dict[str, Any], change: Callable[[str], str]
    ) -> None:
        text = _jcs(b.report(name)).decode()
        changed = change(text)
        assert changed != text, name
        b.add(name, description, expected, changed.encode())

    text_case(
        "payload-duplicate-key",
        "cells appears twice: first empty, then the real list",
        bad,
        lambda s: s.replace('"cells":[', '"cells":[],"cells":[', 1),
    )
    text_case(
        "payload-depth-33",
        "an extra member nested 32 arrays deep (depth 33)",
        bad,
        lambda s: s[:-1] + ',"zz":' + "[" * 32 + "]" * 32 + "}",
    )
    text_case(
        "payload-depth-10000",
        "arrays nested 10 000 deep inside the payload",
        bad,
        lambda s: s[:-1] + ',"zz":' + "[" * 10_000 + "]" * 10_000 + "}",
    )
    text_case(
        "payload-noncanonical-whitespace",
        "the same JSON with a space after each colon (not RFC 8785)",
        bad,
        lambda s: s.replace('":', '": '),
    )
    text_case(
        "payload-noncanonical-key-order",
        "denominators written before cells (keys not sorted)",
        bad,
        lambda s: _reorder(s),
    )
    text_case(
        "payload-noncanonical-number",
        "hosts_seen written as 1.4e1 (not the ECMAScript number form 14)",
        bad,
        lambda s: s.replace('"hosts_seen":14', '"hosts_seen":1.4e1'),
    )
    text_case(
        "payload-nan",
        "a NaN literal",
        bad,
        lambda s: s.replace('"hosts_seen":14', '"hosts_seen":NaN'),
    )
    text_case(
        "payload-number-overflow",
        "a number that overflows to infinity (1e400)",
        bad,
        lambda s: s.replace('"hosts_seen":14', '"hosts_seen":1e400'),
    )
    text_case(
        "payload-lone-surrogate",
        "an escaped lone UTF-16 surrogate in the hoster name",
        bad,
        lambda s: s.replace('"Hoster A Ltd"', '"Hoster \\ud800 Ltd"', 1),
    )
    text_case(
        "payload-sequence-beyond-2-53",
        "sequence 2^53 (beyond the safe integers)",
        bad,
        lambda s: re.sub(r'"sequence":\d+', '"sequence":9007199254740992', s, count=1),
    )
    b.add("payload-not-json", "the signed payload is not JSON", bad, b"not json")
    b.add("payload-not-object", "the signed payload is a JSON array", bad, b"[1]")
    b.add(
        "payload-invalid-utf8",
        "the payload bytes are not UTF-8",
        bad,
        canonical.replace(b"Hoster A Ltd", b"Hoster \xff Ltd"),
    )

    def case(
        name: str, description: str, expected: dict[str, Any], edit: Callable[[Payload], None]
    ) -> None:
        b.add(name, description, expected, _jcs(b.report(name, edit)))

    case("payload-bool-as-int", "matches is true", bad, _set_cell("matches", True))
    case("payload-string-as-int", 'matches is "3"', bad, _set_cell("matches", "3"))
    case("payload-fraction-as-int", "matches is 2.5", bad, _set_cell("matches", 2.5))
    case("payload-negative-count", "matches is -1", bad, _set_cell("matches", -1))
    case("payload-distinct-over-matches", "distinct 4 > matches 3", bad, _set_cell("distinct", 4))
    case("payload-country-lowercase", 'country is "de"', bad, _set_cell("country", "de"))
    case("payload-hoster-too-long", "hoster of 201 characters", bad, _set_cell("hoster", "h" * 201))
    case(
        "payload-hoster-control-char",
        "hoster holds a newline",
        bad,
        _set_cell("hoster", "Hoster\nA"),
    )
    case(
        "payload-unknown-hash-family",
        'hash_family "sha512"',
        bad,
        _set_cell("hash_family", "sha512"),
    )
    case("payload-asn-too-big", "asn 2^32", bad, _set_cell("asn", 2**32))

    def duplicate_cell(data: Payload) -> None:
        data["cells"].append(dict(data["cells"][0]))

    case(
        "payload-duplicate-cell",
        "the same (country, asn, hoster, hash_family) twice",
        bad,
        duplicate_cell,
    )

    def field(name: str, value: Any) -> Callable[[Payload], None]:
        def edit(data: Payload) -> None:
            data[name] = value

        return edit

    def drop(name: str) -> Callable[[Payload], None]:
        def edit(data: Payload) -> None:
            del data[name]

        return edit

    case("payload-unknown-member", "an unknown top-level member", bad, field("extra", 1))
    case("payload-missing-denominators", "denominators is missing", bad, drop("denominators"))
    case("payload-sequence-zero", "sequence 0", bad, field("sequence", 0))
    case(
        "payload-report-id-uppercase",
        "report_id in upper-case hex",
        bad,
        field("report_id", _report_id("upper").upper()),
    )
    case(
        "payload-fractional-seconds",
        "created_at with fractional seconds",
        bad,
        field("created_at", "2026-11-24T12:00:00.5Z"),
    )
    case(
        "payload-offset-timestamp",
        "created_at with +00:00 instead of Z",
        bad,
        field("created_at", "2026-11-24T12:00:00+00:00"),
    )
    case(
        "payload-date-invalid",
        "created_at on 31 November",
        bad,
        field("created_at", "2026-11-31T12:00:00Z"),
    )
    case(
        "payload-version-2",
        "protocol_version 2",
        _expected(400, "unsupported_version"),
        field("protocol_version", 2),
    )
    case(
        "payload-key-id-mismatch",
        "key_id names another key than the signing one",
        _expected(403, "key_mismatch"),
        field("key_id", b.keys["other"].key_id),
    )
    case(
        "payload-unknown-node",
        "node_id is registered nowhere",
        _expected(403, "unknown_node"),
        field("node_id", "node-unregistered"),
    )
    case(
        "payload-stale",
        "created_at 8 days before now (the window is 7 days); period moved with it",
        _expected(400, "stale_timestamp"),
        _moved(-8 * 86_400),
    )
    case(
        "payload-future",
        "created_at 10 minutes after now (the skew allowed is 5)",
        _expected(400, "stale_timestamp"),
        _moved(600),
    )

    # period rules: end > start, 60 s <= length <= 31 days, end <= created_at + 300 s,
    # start >= created_at - 400 days (created_at is 2026-11-24T12:00:00Z)
    case(
        "period-reversed",
        "period end before its start",
        bad_period,
        _shift_period("2026-11-24T00:00:00Z", "2026-11-23T00:00:00Z"),
    )
    case(
        "period-empty",
        "period end equal to its start",
        bad_period,
        _shift_period("2026-11-23T00:00:00Z", "2026-11-23T00:00:00Z"),
    )
    case(
        "period-too-short",
        "a 59-second period",
        bad_period,
        _shift_period("2026-11-23T00:00:00Z", "2026-11-23T00:00:59Z"),
    )
    case(
        "period-too-long",
        "a period of 31 days and 1 second",
        bad_period,
        _shift_period("2026-10-23T00:00:00Z", "2026-11-23T00:00:01Z"),
    )
    case(
        "period-not-begun",
        "period starts 301 s after created_at (it had not begun when the report was signed)",
        bad_period,
        _shift_period("2026-11-24T12:05:01Z", "2026-11-24T13:05:01Z"),
    )
    case(
        "period-too-old",
        "period starts 401 days before created_at",
        bad_period,
        _shift_period("2025-10-19T12:00:00Z", "2025-10-20T12:00:00Z"),
    )

    _sketch_cases(b, case, bad)
    # Last: a lax receiver that accepts it would make later cases of the node regressions.
    case(
        "payload-sequence-gap",
        f"sequence 2 000 000 on a node's first report (more than "
        f"{SEQUENCE_GAP_LIMIT} above its highest)",
        _expected(409, "sequence_gap"),
        field("sequence", 2 * SEQUENCE_GAP_LIMIT),
    )


def _moved(seconds: int) -> Callable[[Payload], None]:
    from datetime import datetime, timedelta

    def at(text: str) -> str:
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=seconds)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def edit(data: Payload) -> None:
        data["created_at"] = at(data["created_at"])
        data["period"] = {k: at(v) for k, v in data["period"].items()}

    return edit


def _reorder(text: str) -> str:
    data = json.loads(text)
    cells = data.pop("cells")
    data["cells"] = cells  # after denominators: insertion order, not sorted
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _sketch_cases(
    b: _Builder,
    case: Callable[[str, str, dict[str, Any], Callable[[Payload], None]], None],
    bad: dict[str, Any],
) -> None:
    from datasketches import hll_sketch, tgt_hll_type

    key = bytes(32)
    items = [hll_item(key, url) for url in sketch_urls("de", 2)]
    good = hll_sketch_b64(items)  # two items: distinct 2 of the first cell
    raw = base64.b64decode(good)

    def other_shape(lg_k: int, kind: Any) -> str:
        sketch = hll_sketch(lg_k, kind)
        for item in items:
            sketch.update(item)
        return base64.b64encode(sketch.serialize_compact()).decode()

    case(
        "sketch-truncated",
        "the cell's HLL sketch cut to half its bytes",
        bad,
        _set_cell("sketch", base64.b64encode(raw[: len(raw) // 2]).decode()),
    )
    case(
        "sketch-garbage",
        "32 bytes that are no sketch",
        bad,
        _set_cell("sketch", base64.b64encode(hashlib.sha256(b"garbage").digest()).decode()),
    )
    case("sketch-not-base64", "the sketch is not base64", bad, _set_cell("sketch", "%%%"))
    case(
        "sketch-wrong-lg-k",
        "an HLL_8 sketch with lg_k 10",
        bad,
        _set_cell("sketch", other_shape(10, tgt_hll_type.HLL_8)),
    )
    case(
        "sketch-wrong-type",
        "an HLL_4 sketch with lg_k 12",
        bad,
        _set_cell("sketch", other_shape(12, tgt_hll_type.HLL_4)),
    )
    many = hll_sketch_b64([hll_item(key, url) for url in sketch_urls("de", 50)])

    def inconsistent(data: Payload) -> None:
        data["cells"][0].update({"matches": 60, "distinct": 2, "sketch": many})

    case(
        "sketch-inconsistent",
        "distinct 2, but the sketch holds 50 distinct items",
        _expected(422, "sketch_mismatch"),
        inconsistent,
    )

    def removal_sketch_truncated(data: Payload) -> None:
        from .testvector import VECTOR_REMOVAL_SECONDS, _kll_sketch

        kll = base64.b64decode(_kll_sketch(VECTOR_REMOVAL_SECONDS))
        data["removals"] = [
            {
                "asn": 64501,
                "country": "DE",
                "hoster": "Hoster A Ltd",
                "median_seconds": 86400,
                "notices_sent": 4,
                "p90_seconds": 200000,
                "removed": 3,
                "removed_within_24h": 2,
                "removed_within_72h": 3,
                "urls_noticed": 3,
                "removal_sketch": base64.b64encode(kll[: len(kll) // 2]).decode(),
            }
        ]

    case(
        "removal-sketch-truncated",
        "a removals row whose KLL sketch is cut in half",
        bad,
        removal_sketch_truncated,
    )


def _stateful_cases(b: _Builder) -> None:
    """Cases whose answer depends on the node's state (phase says which)."""
    base = _base_report()  # report-v1 itself: id 0123..., sequence 1
    b.add(
        "node-not-active",
        "report-v1 from a node that enrolled but is not approved yet",
        _expected(403, "node_not_active"),
        _jcs(base),
        phase="pending",
    )
    replay = dict(base, sequence=50)
    replay["denominators"] = dict(base["denominators"], pages_fetched=61)
    b.add(
        "replayed-report",
        "report-v1's report_id again, with other bytes (after "
        "report-v1 and report-v1-removals were accepted)",
        _expected(409, "replayed_report"),
        _jcs(replay),
        phase="after_reports",
    )
    regression = dict(base, report_id=_report_id("regression"), sequence=1)
    b.add(
        "sequence-regression",
        "a new report with sequence 1 after sequence 2 was accepted",
        _expected(409, "sequence_regression"),
        _jcs(regression),
        phase="after_reports",
    )
    revoked = dict(base, report_id=_report_id("revoked"), sequence=60)
    b.add(
        "revoked-key",
        "a report signed by a key whose node was revoked",
        _expected(403, "revoked_key"),
        _jcs(revoked),
        phase="revoked",
    )


def _batch_cases(b: _Builder) -> list[dict[str, Any]]:
    """Batches whose items are other cases: each item must get the answer it gets alone."""
    by_name = {case["name"]: case for case in b.cases}
    items = [
        "payload-bool-as-int",
        "envelope-keyid-uppercase",
        "payload-duplicate-key",
        "sketch-truncated",
        "period-too-long",
        "envelope-bad-signature",
    ]
    body = (
        b'{"envelopes":['
        + b",".join(base64.b64decode(by_name[name]["body_b64"]) for name in items)
        + b"]}"
    )
    return [
        {
            "name": "batch-of-negative-cases",
            "description": "a batch of refused envelopes: 200, each item with its own status "
            "and code, exactly as the item alone would get",
            "method": "POST",
            "endpoint": BATCH,
            "content_type": JSON_TYPE,
            "phase": "active",
            "items": items,
            "body_b64": base64.b64encode(body).decode(),
            "expected": {
                "http_status": 200,
                "results": [
                    {"index": i, **by_name[name]["expected"]} for i, name in enumerate(items)
                ],
            },
        },
        _raw_batch(
            "batch-empty", "no envelopes", b'{"envelopes":[]}', _expected(422, "invalid_request")
        ),
        _raw_batch(
            "batch-not-a-list",
            "envelopes is not a list",
            b'{"envelopes":{}}',
            _expected(422, "invalid_request"),
        ),
        _raw_batch(
            "batch-depth-10000",
            "the batch body nested 10 000 deep",
            b'{"envelopes":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            _expected(422, "invalid_request"),
        ),
    ]


def _raw_batch(
    name: str, description: str, body: bytes, expected: dict[str, Any], endpoint: str = BATCH
) -> dict[str, Any]:
    """A request without signed parts: its body is fixed text."""
    return {
        "name": name,
        "description": description,
        "method": "POST",
        "endpoint": endpoint,
        "content_type": JSON_TYPE,
        "phase": "active",
        "body_template": body.decode(),
        "body_b64": base64.b64encode(body).decode(),
        "expected": expected,
    }


def _rotation_template(
    announce: str = "current", prove: str = "new", announce_keyid: str | None = None
) -> str:
    t = KEY_ROTATION_PAYLOAD_TYPE
    keyid = announce_keyid or "${keyid:" + announce + "}"
    announcement = _envelope_with(t, signatures=_signature(keyid, "${sig:" + announce + "}"))
    proof = _envelope_with(
        t, signatures=_signature("${keyid:" + prove + "}", "${sig:" + prove + "}")
    )
    return '{"announcement":' + announcement + ',"proof":' + proof + "}"


def _rotation_cases() -> list[dict[str, Any]]:
    b = _Builder()
    base: Payload = json.loads(rotation_payload())
    bad = _expected(422, "malformed_payload")

    def add(
        name: str,
        description: str,
        expected: dict[str, Any],
        payload: bytes,
        template: str | None = None,
        content_type: str = JSON_TYPE,
    ) -> None:
        b.add(
            name,
            description,
            expected,
            payload,
            template=template or _rotation_template(),
            payload_type=KEY_ROTATION_PAYLOAD_TYPE,
            endpoint=ROTATE,
            content_type=content_type,
        )

    def edited(**changes: Any) -> bytes:
        return _jcs({**base, **changes})

    add(
        "rotation-proof-by-other-key",
        "the proof is signed by a third key, not the new one",
        _expected(403, "key_mismatch"),
        edited(),
        _rotation_template(prove="other"),
    )
    add(
        "rotation-announced-by-unknown-key",
        "the announcement is signed by an unregistered key",
        _expected(401, "unknown_key"),
        edited(current_key_id=b.keys["other"].key_id),
        _rotation_template(announce="other"),
    )
    add(
        "rotation-node-mismatch",
        "node_id names another node than the key's",
        _expected(403, "key_mismatch"),
        edited(node_id="node-unregistered"),
    )
    add(
        "rotation-stale",
        "created_at 1 hour before now (the window is 15 minutes)",
        _expected(400, "stale_timestamp"),
        edited(created_at="2026-11-24T11:00:00Z"),
    )
    add(
        "rotation-new-key-short",
        "new_public_key is 31 bytes",
        bad,
        edited(new_public_key=base64.b64encode(bytes(31)).decode()),
    )
    add("rotation-overlap-negative", "overlap_seconds is -1", bad, edited(overlap_seconds=-1))
    add("rotation-overlap-bool", "overlap_seconds is true", bad, edited(overlap_seconds=True))
    add(
        "rotation-fractional-seconds",
        "created_at with fractional seconds",
        bad,
        edited(created_at="2026-11-24T12:00:00.5Z"),
    )
    add(
        "rotation-noncanonical",
        "the payload with spaces after colons (not RFC 8785)",
        bad,
        rotation_payload().replace(b'":', b'": '),
    )
    add(
        "rotation-duplicate-key",
        "node_id appears twice in the payload",
        bad,
        rotation_payload().replace(b'"node_id":', b'"node_id":"node-other","node_id":', 1),
    )
    add(
        "rotation-keyid-uppercase",
        "the announcement's keyid in upper case",
        _expected(400, "malformed_envelope"),
        edited(),
        _rotation_template(announce_keyid="${KEYID:current}"),
    )
    add(
        "rotation-content-type",
        "a valid request sent as text/plain",
        _expected(415, "unsupported_media_type"),
        edited(),
        content_type="text/plain",
    )
    return b.cases


def _suite(description: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    keys = vector_keys()
    return {
        "description": description,
        "keys": {
            role: {"public_key_b64": key.public_key_b64, "key_id": key.key_id}
            for role, key in keys.items()
        },
        "phases": {
            "pending": "the node (report-v1's node-example, key 'current') is enrolled, not "
            "approved",
            "active": "the node is approved and has no accepted report",
            "after_reports": "report-v1 and report-v1-removals were accepted",
            "revoked": "the node was revoked",
        },
        "cases": cases,
    }


def _enroll_cases() -> list[dict[str, Any]]:
    from .testvector import build_enroll_vector

    request = json.loads(build_enroll_vector()["request_canonical"])
    unknown = _jcs(request)  # the vector's invitation code was never issued

    def with_(**changes: Any) -> bytes:
        return _jcs({**request, **changes})

    return [
        _raw_batch(
            "enroll-unknown-invitation",
            "an invitation code no admin issued",
            unknown,
            _expected(403, "invalid_invitation"),
            ENROLL,
        ),
        _raw_batch(
            "enroll-malformed-invitation",
            "an invitation code of the wrong form",
            with_(invitation="inv_123"),
            _expected(403, "invalid_invitation"),
            ENROLL,
        ),
        _raw_batch(
            "enroll-extra-member",
            "an unknown member in the request",
            with_(extra=1),
            _expected(422, "invalid_request"),
            ENROLL,
        ),
    ]


def _methods_cases(b: _Builder) -> None:
    """The optional cell member ``methods`` (§3): four keys, strict ints, sum == matches."""
    bad = _expected(422, "malformed_payload")
    for name, description, methods in (
        (
            "payload-methods-sum-not-matches",
            "methods sum to 2, matches is 3",
            {"direct": 1, "dihedral": 1, "trimmed": 0, "region": 0},
        ),
        (
            "payload-methods-missing-key",
            "methods lacks region",
            {"direct": 3, "dihedral": 0, "trimmed": 0},
        ),
        (
            "payload-methods-bool",
            "methods.direct is true (the others sum to 2)",
            {"direct": True, "dihedral": 2, "trimmed": 0, "region": 0},
        ),
        (
            "payload-methods-unknown-key",
            'methods holds "crop"',
            {"direct": 3, "dihedral": 0, "trimmed": 0, "region": 0, "crop": 0},
        ),
        (
            "payload-methods-negative",
            "methods.dihedral is -1 (sum still 3)",
            {"direct": 4, "dihedral": -1, "trimmed": 0, "region": 0},
        ),
    ):
        b.add(name, description, bad, _jcs(b.report(name, _set_cell("methods", methods))))


def negative_vectors() -> dict[Path, dict[str, Any]]:
    b = _Builder()
    _envelope_cases(b)
    _payload_cases(b)
    _stateful_cases(b)
    b.cases.extend(_batch_cases(b))
    _methods_cases(b)  # added last: the cases before keep their sequences and bytes
    coverage_cases(b)  # issue 16, after the methods cases for the same reason
    video_cases(b)  # issue 13, after the coverage cases for the same reason
    discovery_cases(b)  # issue 14, after the video cases for the same reason
    return {
        NEGATIVE_DIR / "reports-v1.json": _suite(
            "Requests to POST /v1/reports and /v1/reports/batch that must be refused, each with "
            "the expected status and error code. Signing keys by role: 'current' is report-v1's "
            "key, 'other' a key registered nowhere.",
            b.cases,
        ),
        NEGATIVE_DIR / "key-rotation-v1.json": _suite(
            "Requests to POST /v1/keys/rotate that must be refused. 'current' signs the "
            "announcement, 'new' the proof (key-rotation-v1.json), 'other' is registered nowhere.",
            _rotation_cases(),
        ),
        NEGATIVE_DIR / "enroll-v1.json": _suite(
            "Requests to POST /v1/enroll that must be refused (no token, no signature).",
            _enroll_cases(),
        ),
    }
