"""Sketches stay inside the coordinator (docs/threat-model.md): after the coverage vector and a
next-day report built from it are accepted, no answer a reader can get (picture, its CSV
sections, the signed snapshot, coverage, flows, shifts, nodes), even at the detail tier,
holds a cell's sketch, a Theta entry or a keyed member, in any of the spellings below."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from datasketches import compact_theta_sketch
from fastapi.testclient import TestClient

from coordinator.app import create_app
from coordinator.auth import Role, create_token
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.registry import add_node
from protocol import REPORT_PAYLOAD_TYPE
from protocol.models import Period, Report
from protocol.testvector import (
    VECTOR_COVERAGE_PATH,
    VECTOR_NODE_ID,
    VECTOR_NOW,
    envelope_bytes,
    vector_key,
)

JSON = {"content-type": "application/json"}
DAY = timedelta(days=1)


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], list[Report]]]:
    app = create_app(CoordinatorSettings(data_dir=tmp_path), clock=lambda: VECTOR_NOW)
    with new_session(app.state.engine) as session:
        add_node(
            session,
            node_id=VECTOR_NODE_ID,
            country="DE",
            public_key_b64=vector_key().public_key_b64,
            now=VECTOR_NOW,
        )
        token = create_token(
            session, name="admin", role=Role.ADMIN, now=VECTOR_NOW, ttl=DAY, actor="test"
        ).token
    vector = json.loads(VECTOR_COVERAGE_PATH.read_text(encoding="utf-8"))
    first = Report.from_payload(vector["payload_utf8"].encode())
    # The next day: the DE cells are gone (item A turns up at NL, as in the vector), so a
    # flows step exists with removals and a flow.
    second = first.model_copy(
        update={
            "report_id": "6b" * 16,
            "sequence": 6,
            "period": Period(start=first.period.end, end=first.period.end + DAY),
            "cells": [c for c in first.cells if c.country != "DE"],
        }
    )
    with TestClient(app) as client:
        for report in (first, second):
            body = envelope_bytes(report.to_payload(), REPORT_PAYLOAD_TYPE, vector_key())
            response = client.post("/v1/reports", content=body, headers=JSON)
            assert response.status_code == 200, response.text
        yield client, {"authorization": f"Bearer {token}"}, [first, second]


def _secrets(reports: list[Report]) -> set[str]:
    """Every spelling of a sketch or a member a leak could take."""
    found: set[str] = set()
    for report in reports:
        for cell in report.cells:
            for b64 in (cell.sketch, cell.url_theta, cell.item_theta):
                if not b64:
                    continue
                raw = base64.b64decode(b64)
                found |= {b64, raw.hex(), base64.urlsafe_b64encode(raw).decode()}
            for b64 in (cell.url_theta, cell.item_theta):
                for entry in compact_theta_sketch.deserialize(base64.b64decode(b64 or "")):
                    found |= {str(entry), f"{entry:016x}"}
    vector = json.loads(VECTOR_COVERAGE_PATH.read_text(encoding="utf-8"))
    for entry in vector["theta_inputs"]:
        found |= set(entry["url_members"]) | set(entry["item_members"])
        found |= set(entry["urls"]) | set(entry["item_identities"])
    return found


WINDOW = "period_start=2026-11-23T00:00:00Z&period_end=2026-11-25T00:00:00Z"
FLOWS = f"/v1/flows?{WINDOW}&by=hoster"
PICTURE = f"/v1/picture?{WINDOW}&include_nodes=true"
PATHS = (
    PICTURE,
    *(
        f"/v1/picture.csv?{WINDOW}&section={section}"
        for section in ("by_country", "by_hoster", "by_family", "by_period", "by_node")
    ),
    FLOWS,
    f"/v1/flows?{WINDOW}&by=country",
    "/v1/picture/shifts?before_start=2026-11-23T00:00:00Z&before_end=2026-11-24T00:00:00Z"
    "&after_start=2026-11-24T00:00:00Z&after_end=2026-11-25T00:00:00Z",
    f"/v1/coverage?{WINDOW}",
    "/v1/nodes",
)


def _answers(client: TestClient, auth: dict[str, str]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for path in PATHS:
        response = client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.text)
        answers[path] = response.text
    snapshot = client.get(f"/v1/picture/snapshot?{WINDOW}&include_nodes=true", headers=auth)
    assert snapshot.status_code == 200, snapshot.text
    answers["snapshot payload"] = base64.b64decode(snapshot.json()["payload"]).decode()
    return answers


def test_no_answer_holds_a_sketch_or_a_member(
    loaded: tuple[TestClient, dict[str, str], list[Report]],
) -> None:
    client, auth, reports = loaded
    answers = _answers(client, auth)
    # The answers carry the figures (so the search below looked at real content): a step
    # with item A's flow from Hoster A Ltd to Hoster B BV, and the union of distinct URLs.
    flows: Any = json.loads(answers[FLOWS])
    assert [f["items"]["estimate"] for f in flows["steps"][0]["flows"]] == [1], flows
    assert json.loads(answers[PICTURE])["totals"]["distinct"] == sum(
        c.distinct for c in reports[0].cells
    )
    # ... and none of the sketches, entries or members.
    secrets = _secrets(reports)
    for path, text in answers.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, (path, leaked[:3])
