"""The conformance checker against our own coordinator (in process, SQLite).

Every vector must get the status and code it expects; a failure names the vector with the
expected and the actual answer (docs/conformance.md).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from coordinator.app import create_app
from coordinator.auth import Role, create_token
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from protocol.conformance import CoordinatorRun, Result, SetupError, main, print_results
from protocol.testvector import VECTORS_DIR
from protocol.vector_template import envelope_template

# A fixed "now" shared by the coordinator and the checker: the vectors are re-timed to it.
NOW = datetime(2026, 12, 1, 9, 30, 0, tzinfo=UTC)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    app = create_app(CoordinatorSettings(data_dir=tmp_path), clock=lambda: NOW)
    with new_session(app.state.engine) as session:
        token = create_token(
            session,
            name="conformance",
            role=Role.ADMIN,
            now=NOW,
            ttl=timedelta(days=1),
            actor="test",
        ).token
    with TestClient(app) as client:
        yield client, token


def _run(client: TestClient, token: str) -> list[Result]:
    return CoordinatorRun(client, token, country="ZZ", clock=lambda: NOW).run(VECTORS_DIR)


def test_every_vector_gets_its_expected_answer(coordinator: tuple[TestClient, str]) -> None:
    client, token = coordinator
    results = _run(client, token)
    out = io.StringIO()
    print_results(results, out)
    failed = [r for r in results if not r.passed]
    assert not failed, out.getvalue()
    # The run covered every case of both negative files plus the positive vectors.
    names = {r.name for r in results}
    assert {
        "payload-duplicate-key",
        "rotation-proof-by-other-key",
        "report-v1-sketch",
        "report-v1-coverage",
        "report-v1-video",
        "payload-unknown-video-family",
        "report-v1-discovery",
        "discovery-duplicate-row",
        "discovery-negative-count",
        "theta-estimation-within-bounds",
        "theta-estimation-outside-bounds",
        "coverage-cell-hoster-missing",
        "url-theta-not-distinct",
        "key-rotation-v1",
        "revoked-key",
        "node-not-active",
    } <= names


def test_positive_vectors_are_accepted(coordinator: tuple[TestClient, str]) -> None:
    # Independent of the strict checks still being added: what must be accepted is.
    client, token = coordinator
    results = {r.name: r for r in _run(client, token)}
    for name in (
        "batch-v1[0]",
        "batch-v1[1]",
        "report-v1-resent",
        "report-v1-removals-resent",
        "report-v1-sketch",
        "report-v1-methods",
        "report-v1-coverage",
        "report-v1-video",
        "report-v1-discovery",
        "theta-estimation-within-bounds",
        "key-rotation-v1",
        "key-rotation-v1-repeat",
        "enroll-n",
        "enroll-p",
        "enroll-r",
    ):
        assert results[name].passed, (name, results[name])


def test_a_wrong_admin_token_stops_the_run(coordinator: tuple[TestClient, str]) -> None:
    client, _token = coordinator
    with pytest.raises(SetupError, match="invitation"):
        _run(client, "lbr_0000000000000000_" + "A" * 43)


def test_a_lax_answer_is_reported_as_failure(coordinator: tuple[TestClient, str]) -> None:
    # A coordinator that accepts what it must refuse fails the vector with the actual answer.
    client, token = coordinator
    run = CoordinatorRun(client, token, country="ZZ", clock=lambda: NOW)
    node = run.enroll("x", approve=True)
    vector = json.loads((VECTORS_DIR / "report-v1.json").read_text())
    case = {
        "name": "valid-report-expected-refused",
        "endpoint": "/v1/reports",
        "content_type": "application/json",
        "payload_type": vector["payload_type"],
        "payload_b64": base64.b64encode(vector["payload_utf8"].encode()).decode(),
        "body_template": envelope_template(vector["payload_type"]),
        "expected": {"http_status": 422, "code": "malformed_payload"},
    }
    run.run_case(case, node, {})
    (result,) = [r for r in run.results if r.name == case["name"]]
    assert not result.passed
    assert (result.expected, result.actual) == ("422 malformed_payload", "200 -")


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The coordinator as a real HTTP server on 127.0.0.1 (the CLI's own client talks to it),
    on the real clock like the CLI."""
    app = create_app(CoordinatorSettings(data_dir=tmp_path))
    with new_session(app.state.engine) as session:
        token = create_token(
            session,
            name="conformance",
            role=Role.ADMIN,
            now=datetime.now(UTC),
            ttl=timedelta(days=1),
            actor="test",
        ).token
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # start-up only; generous for a loaded machine
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def test_cli_against_a_loopback_coordinator(
    loopback: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token = loopback
    status = main(["coordinator", "--url", url, "--admin-token", token])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.strip().endswith("passed, 0 failed")
    assert "PASS  payload-duplicate-key" in out


def test_cli_wrong_token_exits_2(
    loopback: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _token = loopback
    assert main(["coordinator", "--url", url, "--admin-token", "lbr_0_bad"]) == 2
    assert "setup failed" in capsys.readouterr().err


def test_cli_envelope_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector = json.loads((VECTORS_DIR / "report-v1.json").read_text())
    good = tmp_path / "good.json"
    good.write_text(vector["envelope_canonical"])
    assert main(["envelope", str(good), "--public-key", vector["public_key_b64"]]) == 0
    assert "FAIL" not in capsys.readouterr().out
    # A node that sends the envelope with payloadType first (not RFC 8785) fails.
    loose = tmp_path / "loose.json"
    envelope = vector["envelope"]
    loose.write_text(
        json.dumps(
            {k: envelope[k] for k in ("payloadType", "payload", "signatures")},
            separators=(",", ":"),
        )
    )
    assert main(["envelope", str(loose), "--public-key", vector["public_key_b64"]]) == 1
    assert "FAIL  noncanonical_body" in capsys.readouterr().out
    cases = json.loads((VECTORS_DIR / "negative" / "reports-v1.json").read_text())["cases"]
    (bool_case,) = [c for c in cases if c["name"] == "payload-bool-as-int"]
    bad = tmp_path / "bad.json"
    bad.write_bytes(base64.b64decode(bool_case["body_b64"]))
    assert main(["envelope", str(bad), "--public-key", vector["public_key_b64"]]) == 1
    assert "FAIL  malformed_payload" in capsys.readouterr().out
