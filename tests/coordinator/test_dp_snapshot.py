"""Signed snapshots of a DP picture (issue 15): the privacy label is inside the signed payload,
offline verification keeps it and `snapshot verify` prints it; a suppressed picture's snapshot
prints no label."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from coordinator.cli import app as cli
from coordinator.dp.release import DpPicture
from coordinator.snapshot import privacy_summary, verify_snapshot
from protocol.keys import NodeKey, decode_public_key

from .conftest import NOW
from .helpers import bearer, make_token
from .test_dp_api import _client


@pytest.fixture
def dp_client(engine: Engine, tmp_path: Path, key_a: NodeKey) -> Iterator[TestClient]:
    with _client(engine, tmp_path, key_a, budget=20.0) as client:
        yield client


def _snapshot(client: TestClient, token: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    envelope = client.get("/v1/picture/snapshot", headers=bearer(token)).json()
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(envelope), encoding="utf-8")
    return snap, envelope


def test_verify_keeps_the_label_and_the_cli_prints_it(
    dp_client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    viewer = make_token(engine, "viewer", NOW)
    served = dp_client.get("/v1/picture", headers=bearer(viewer)).json()
    snap, envelope = _snapshot(dp_client, viewer, tmp_path)
    key = dp_client.get("/v1/coordinator/key").json()["public_key"]

    picture = verify_snapshot(snap.read_bytes(), decode_public_key(key))
    assert isinstance(picture, DpPicture)
    # The same release as the picture route (stored, not drawn again), label and all.
    assert picture.model_dump(mode="json")["privacy"] == served["privacy"]
    assert picture.totals.matches == served["totals"]["matches"]
    label = picture.privacy
    lines = privacy_summary(picture)
    assert lines[0] == (
        f"differential privacy: discrete_laplace noise, epsilon {label.epsilon:g} (delta 0), "
        f"noise scale {label.scale:g}, sensitivity 3"
    )
    assert lines[1].startswith("unit of privacy: one match")

    result = CliRunner().invoke(cli, ["snapshot", "verify", str(snap), "--public-key", key])
    assert result.exit_code == 0, result.output
    assert f"{served['totals']['matches']} noisy matches" in result.output
    for line in lines:
        assert line in result.output
    assert "not published (0 is not a count): distinct" in result.output

    # The label is signed: changing epsilon breaks the signature.
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["privacy"]["epsilon"] = 100.0
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    snap.write_text(json.dumps(envelope), encoding="utf-8")
    bad = CliRunner().invoke(cli, ["snapshot", "verify", str(snap), "--public-key", key])
    assert bad.exit_code == 1 and "bad_signature" in bad.output


def test_an_exact_snapshot_prints_no_label(
    dp_client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    admin = make_token(engine, "admin", NOW)  # admins get the exact picture, even in DP mode
    snap, _ = _snapshot(dp_client, admin, tmp_path)
    key = dp_client.get("/v1/coordinator/key").json()["public_key"]
    picture = verify_snapshot(snap.read_bytes(), decode_public_key(key))
    assert not isinstance(picture, DpPicture) and privacy_summary(picture) == []
    result = CliRunner().invoke(cli, ["snapshot", "verify", str(snap), "--public-key", key])
    assert result.exit_code == 0, result.output
    assert "tier full" in result.output and "noisy" not in result.output
    assert "differential privacy" not in result.output
