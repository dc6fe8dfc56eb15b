"""Conformance checker for LIBRA protocol implementations (docs/conformance.md).

``python -m protocol.conformance coordinator --url URL --admin-token TOKEN`` enrols three
throw-away nodes with fresh keys at a coordinator, replays every vector of
protocol/vectors (negative ones and the positive ones) re-bound to those nodes and the current
time, and prints PASS/FAIL per vector with the expected and the actual status and code.

``python -m protocol.conformance envelope FILE [--public-key B64]`` checks a request body a
node implementation produced (a report envelope or a key-rotation request) offline.

Both exit 1 on any failure. Only protocol/ and third-party libraries are used.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from nacl.public import PrivateKey
from nacl.signing import VerifyKey

from . import REPORT_PAYLOAD_TYPE
from .conformance_check import check_body
from .conformance_estimation import GeneratedCase, estimation_cases
from .keys import NodeKey
from .testvector import (
    BATCH_PATH,
    KEY_ROTATION_PATH,
    NEGATIVE_DIR,
    VECTOR_COVERAGE_PATH,
    VECTOR_METHODS_PATH,
    VECTOR_NODE_ID,
    VECTOR_NOW,
    VECTOR_PATH,
    VECTOR_REMOVALS_PATH,
    VECTOR_SKETCH_PATH,
    vector_keys,
)
from .testvector_discovery import VECTOR_DISCOVERY_PATH
from .testvector_video import VECTOR_VIDEO_PATH
from .vector_template import Binding, Signed, envelope_template, expand

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Result:
    name: str
    expected: str
    actual: str
    passed: bool


@dataclass
class LiveNode:
    """A node this run enrolled: its id, its keys by role, and how vectors map onto it."""

    node_id: str
    keys: dict[str, NodeKey]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _answer(response: httpx.Response) -> tuple[int, Any]:
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


def _describe(status: int, code_or_status: str | None) -> str:
    return f"{status} {code_or_status or '-'}"


class CoordinatorRun:
    """One conformance run against a live coordinator (state lives in the coordinator)."""

    def __init__(self, client: httpx.Client, admin_token: str, *, country: str, clock: Clock):
        self.client = client
        self.admin = {"authorization": f"Bearer {admin_token}"}
        self.country = country
        self.now = clock().astimezone(UTC).replace(microsecond=0)
        self.run_id = secrets.token_hex(4)
        self.results: list[Result] = []
        self._report_ids: dict[str, str] = {}
        self._other = vector_keys()["other"]

    # ---------------------------------------------------------------- setup

    def _fresh_report_id(self, old: str) -> str:
        return self._report_ids.setdefault(old, secrets.token_hex(16))

    def binding(self, node: LiveNode) -> Binding:
        vector = vector_keys()
        return Binding(
            strings={
                VECTOR_NODE_ID: node.node_id,
                vector["current"].key_id: node.keys["current"].key_id,
                vector["new"].public_key_b64: node.keys["new"].public_key_b64,
            },
            shift=self.now - VECTOR_NOW,
            report_id=self._fresh_report_id,
        )

    def enroll(self, suffix: str, *, approve: bool) -> LiveNode:
        node = LiveNode(
            node_id=f"conf-{self.run_id}-{suffix}",
            keys={"current": NodeKey.generate(), "new": NodeKey.generate(), "other": self._other},
        )
        invitation = self.client.post(
            "/v1/invitations",
            json={"country": self.country, "note": "conformance run"},
            headers=self.admin,
        )
        self._setup_ok(invitation, "create an invitation (admin token)")
        enrolled = self.client.post(
            "/v1/enroll",
            json={
                "invitation": invitation.json()["code"],
                "node_id": node.node_id,
                "country": self.country,
                "operator": "LIBRA conformance checker",
                "ed25519_public_key": node.keys["current"].public_key_b64,
                "x25519_public_key": base64.b64encode(
                    bytes(PrivateKey.generate().public_key)
                ).decode(),
            },
        )
        self._setup_ok(enrolled, "enrol a node")
        body = enrolled.json()
        self.record(
            f"enroll-{suffix}",
            "200 pending",
            _describe(enrolled.status_code, body.get("status")),
            enrolled.status_code == 200
            and body.get("status") == "pending"
            and body.get("key_id") == node.keys["current"].key_id,
        )
        if approve:
            self.approve(node)
        return node

    def approve(self, node: LiveNode) -> None:
        self._setup_ok(
            self.client.post(f"/v1/members/{node.node_id}/approve", headers=self.admin),
            "approve a node",
        )

    def revoke(self, node: LiveNode) -> None:
        self._setup_ok(
            self.client.post(f"/v1/members/{node.node_id}/revoke", headers=self.admin),
            "revoke a node",
        )

    @staticmethod
    def _setup_ok(response: httpx.Response, what: str) -> None:
        if response.status_code != 200:
            raise SetupError(f"cannot {what}: {response.status_code} {response.text[:300]}")

    # ---------------------------------------------------------------- cases

    def record(self, name: str, expected: str, actual: str, passed: bool) -> None:
        self.results.append(Result(name, expected, actual, passed))

    def body_of(self, case: dict[str, Any], node: LiveNode) -> bytes:
        if "payload_b64" not in case:  # a request without signed parts
            return str(case["body_template"]).encode()
        payload = self.binding(node).apply(base64.b64decode(case["payload_b64"]))
        return expand(case["body_template"], Signed(payload, case["payload_type"], node.keys))

    def post(self, case: dict[str, Any], body: bytes) -> tuple[int, Any]:
        return _answer(
            self.client.post(
                case["endpoint"], content=body, headers={"content-type": case["content_type"]}
            )
        )

    def run_case(self, case: dict[str, Any], node: LiveNode, by_name: dict[str, Any]) -> None:
        expected = case["expected"]
        if "items" in case:  # a batch of other cases
            bodies = [self.body_of(by_name[name], node) for name in case["items"]]
            body = b'{"envelopes":[' + b",".join(bodies) + b"]}"
            status, answer = self.post(case, body)
            self._check_batch(case["name"], expected, status, answer)
            return
        status, answer = self.post(case, self.body_of(case, node))
        code = _code(answer)
        self.record(
            case["name"],
            _describe(expected["http_status"], expected["code"]),
            _describe(status, code),
            status == expected["http_status"] and code == expected["code"],
        )

    def _check_batch(self, name: str, expected: dict[str, Any], status: int, answer: Any) -> None:
        results = answer.get("results") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(results, list):
            self.record(name, "200 results", _describe(status, _code(answer)), False)
            return
        for want, got in zip(expected["results"], results, strict=False):
            error = got.get("error") or {}
            got_code = error.get("code") if "code" in want else got.get("status")
            want_code = want.get("code", want.get("status"))
            self.record(
                f"{name}[{want['index']}]",
                _describe(want["http_status"], want_code),
                _describe(got.get("http_status", 0), got_code),
                got.get("http_status") == want["http_status"] and got_code == want_code,
            )
        if len(results) != len(expected["results"]):
            self.record(name, f"{len(expected['results'])} results", f"{len(results)}", False)

    def positive(self, name: str, node: LiveNode, vector: dict[str, Any], status: str) -> None:
        """Submit a positive report vector (re-bound) and expect ``status``."""
        case = {
            "name": name,
            "endpoint": "/v1/reports",
            "content_type": "application/json",
            "payload_type": vector["payload_type"],
            "payload_b64": base64.b64encode(vector["payload_utf8"].encode()).decode(),
            "body_template": envelope_template(vector["payload_type"]),
        }
        code, answer = self.post(case, self.body_of(case, node))
        got = answer.get("status") if code == 200 and isinstance(answer, dict) else _code(answer)
        self.record(name, f"200 {status}", _describe(code, got), code == 200 and got == status)

    def generated(self, node: LiveNode, case: GeneratedCase) -> None:
        """Submit a report the run built itself (protocol.conformance_estimation), re-bound."""
        request = {
            "endpoint": "/v1/reports",
            "content_type": "application/json",
            "payload_type": REPORT_PAYLOAD_TYPE,
            "payload_b64": base64.b64encode(case.payload).decode(),
            "body_template": envelope_template(REPORT_PAYLOAD_TYPE),
        }
        status, answer = self.post(request, self.body_of(request, node))
        got = answer.get("status") if status == 200 and isinstance(answer, dict) else _code(answer)
        self.record(
            case.name,
            _describe(case.http_status, case.code),
            _describe(status, got),
            status == case.http_status and got == case.code,
        )

    def batch_positive(self, node: LiveNode, vector: dict[str, Any]) -> None:
        envelopes = json.loads(vector["request_canonical"])["envelopes"]
        bodies = []
        for envelope in envelopes:
            payload = self.binding(node).apply(base64.b64decode(envelope["payload"]))
            template = envelope_template(envelope["payloadType"])
            bodies.append(expand(template, Signed(payload, envelope["payloadType"], node.keys)))
        case = {"endpoint": "/v1/reports/batch", "content_type": "application/json"}
        status, answer = self.post(case, b'{"envelopes":[' + b",".join(bodies) + b"]}")
        want = [{"index": i, "http_status": 200, "status": "accepted"} for i in range(len(bodies))]
        self._check_batch("batch-v1", {"results": want}, status, answer)

    def rotation_positive(self, node: LiveNode, vector: dict[str, Any]) -> None:
        payload = self.binding(node).apply(vector["payload_utf8"].encode())
        template = (
            json.dumps({"announcement": "A", "proof": "P"}, separators=(",", ":"))
            .replace('"A"', envelope_template(vector["payload_type"], "current"))
            .replace('"P"', envelope_template(vector["payload_type"], "new"))
        )
        body = expand(template, Signed(payload, vector["payload_type"], node.keys))
        case = {"endpoint": "/v1/keys/rotate", "content_type": "application/json"}
        for name, want in (("key-rotation-v1", "rotated"), ("key-rotation-v1-repeat", "unchanged")):
            status, answer = self.post(case, body)
            ok = (
                status == 200
                and isinstance(answer, dict)
                and answer.get("status") == want
                and answer.get("key_id") == node.keys["new"].key_id
            )
            got = (
                answer.get("status")
                if status == 200 and isinstance(answer, dict)
                else _code(answer)
            )
            self.record(name, f"200 {want}", _describe(status, got), ok)

    # ---------------------------------------------------------------- the run

    def run(self, vectors: Path) -> list[Result]:
        reports = _load(vectors / "negative" / "reports-v1.json")["cases"]
        rotations = _load(vectors / "negative" / "key-rotation-v1.json")["cases"]
        enrolments = _load(vectors / "negative" / "enroll-v1.json")["cases"]
        by_name = {case["name"]: case for case in reports}

        def phase(cases: Iterable[dict[str, Any]], name: str, node: LiveNode) -> None:
            for case in cases:
                if case["phase"] == name:
                    self.run_case(case, node, by_name)

        refused = self.enroll("n", approve=True)  # negative cases
        accepted = self.enroll("p", approve=False)  # positive and stateful cases
        rotating = self.enroll("r", approve=True)  # key rotation
        try:
            phase(reports, "pending", accepted)
            self.approve(accepted)
            phase(reports, "active", refused)
            phase(enrolments, "active", refused)
            within, outside = estimation_cases()
            self.generated(refused, outside)
            self.batch_positive(accepted, _load(vectors / BATCH_PATH.name))
            self.positive(
                "report-v1-resent", accepted, _load(vectors / VECTOR_PATH.name), "duplicate"
            )
            self.positive(
                "report-v1-removals-resent",
                accepted,
                _load(vectors / VECTOR_REMOVALS_PATH.name),
                "duplicate",
            )
            self.positive(
                "report-v1-sketch", accepted, _load(vectors / VECTOR_SKETCH_PATH.name), "accepted"
            )
            self.positive(
                "report-v1-methods",
                accepted,
                _load(vectors / VECTOR_METHODS_PATH.name),
                "accepted",
            )
            self.positive(
                "report-v1-coverage",
                accepted,
                _load(vectors / VECTOR_COVERAGE_PATH.name),
                "accepted",
            )
            self.generated(accepted, within)  # sequence 6
            self.positive(  # issue 13: video families (sequence 7)
                "report-v1-video",
                accepted,
                _load(vectors / VECTOR_VIDEO_PATH.name),
                "accepted",
            )
            self.positive(  # issue 14: discovery counts (sequence 8)
                "report-v1-discovery",
                accepted,
                _load(vectors / VECTOR_DISCOVERY_PATH.name),
                "accepted",
            )
            phase(reports, "after_reports", accepted)
            phase(rotations, "active", rotating)
            self.rotation_positive(rotating, _load(vectors / KEY_ROTATION_PATH.name))
            self.revoke(refused)
            phase(reports, "revoked", refused)
        finally:
            # Leave no usable test node behind (the accepted reports stay in the picture).
            for node in (accepted, rotating):
                self.client.post(f"/v1/members/{node.node_id}/revoke", headers=self.admin)
        return self.results


class SetupError(Exception):
    """The coordinator refused a setup step (admin token, invitation, enrolment)."""


def print_results(results: list[Result], out: Any = None) -> None:
    out = sys.stdout if out is None else out
    width = max((len(r.name) for r in results), default=10)
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        out.write(f"{verdict}  {r.name:<{width}}  expected {r.expected:<32} actual {r.actual}\n")
    failed = sum(not r.passed for r in results)
    out.write(f"{len(results) - failed} passed, {failed} failed\n")


def _envelope_command(args: argparse.Namespace) -> int:
    raw = Path(args.file).read_bytes()
    key = VerifyKey(base64.b64decode(args.public_key, validate=True)) if args.public_key else None
    found = check_body(raw, key)
    for label in found.passed:
        print(f"PASS  {label}")
    for label in found.skipped:
        print(f"SKIP  {label}")
    for code, message in found.failed:
        print(f"FAIL  {code}: {message}")
    return 0 if found.ok else 1


def _coordinator_command(args: argparse.Namespace) -> int:
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=60.0, trust_env=False) as client:
        run = CoordinatorRun(
            client, args.admin_token, country=args.country, clock=lambda: datetime.now(UTC)
        )
        try:
            results = run.run(Path(args.vectors))
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
    print_results(results)
    return 0 if all(r.passed for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m protocol.conformance", description=__doc__ and __doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    coordinator = sub.add_parser("coordinator", help="replay the vectors against a coordinator")
    coordinator.add_argument("--url", required=True, help="the coordinator's base URL")
    coordinator.add_argument(
        "--admin-token", required=True, help="an API token with scope members:write (role admin)"
    )
    coordinator.add_argument(
        "--country", default="ZZ", help="country of the throw-away test nodes (default ZZ)"
    )
    coordinator.add_argument(
        "--vectors",
        default=str(NEGATIVE_DIR.parent),
        help="the vectors directory (default: the packaged one)",
    )
    envelope = sub.add_parser("envelope", help="check one request body a node produced")
    envelope.add_argument(
        "file", help="the exact body bytes (a report envelope or a key-rotation request)"
    )
    envelope.add_argument("--public-key", help="the signer's Ed25519 public key (base64)")
    args = parser.parse_args(argv)
    if args.command == "envelope":
        return _envelope_command(args)
    return _coordinator_command(args)


if __name__ == "__main__":
    sys.exit(main())
