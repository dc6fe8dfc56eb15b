"""The OpenAPI document in DP mode (issue 15): the privacy label, its header, the spent budget's
429 and the 404 of views not published to viewers are documented, and a real noisy answer
validates against the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import bearer, make_token
from .test_dp_api import _client


@pytest.fixture
def dp_client(engine: Engine, tmp_path: Path, key_a: NodeKey) -> Iterator[TestClient]:
    with _client(engine, tmp_path, key_a, budget=20.0) as client:
        yield client


def _validate(document: dict[str, Any], name: str, instance: Any) -> None:
    """Validate against one component schema, its references resolved in the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema_rs.validate(schema, instance)


def test_dp_mode_is_documented(dp_client: TestClient) -> None:
    document = dp_client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    label = schemas["Privacy"]
    assert {"epsilon", "scale", "unit", "withheld"} <= set(label["required"])
    assert label["properties"]["mechanism"]["const"] == "discrete_laplace"
    for name in ("Picture", "Shifts"):
        field = schemas[name]["properties"]["privacy"]
        assert {"$ref": "#/components/schemas/Privacy"} in field["anyOf"]
        assert "privacy" not in schemas[name].get("required", [])  # absent outside DP mode
    paths = document["paths"]
    for path in ("/v1/picture", "/v1/picture.csv", "/v1/picture/snapshot", "/v1/picture/shifts"):
        responses = paths[path]["get"]["responses"]
        assert responses["429"]["description"].startswith("privacy_budget_exhausted"), path
        assert responses["429"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    for path in ("/v1/picture", "/v1/picture.csv", "/v1/picture/shifts"):
        assert "Libra-Privacy" in paths[path]["get"]["responses"]["200"]["headers"]
    assert "include_nodes" in paths["/v1/picture"]["get"]["responses"]["403"]["description"]
    assert (
        "privacy label" in paths["/v1/picture/snapshot"]["get"]["responses"]["200"]["description"]
    )
    # The exact views answer viewers 404 not_published; the picture itself never does.
    for path in ("/v1/coverage", "/v1/flows", "/v1/picture/removals", "/v1/picture/discovery"):
        assert paths[path]["get"]["responses"]["404"]["description"].startswith("not_published")
    assert "404" not in paths["/v1/picture"]["get"]["responses"]


def test_a_noisy_answer_fits_the_documented_schema(dp_client: TestClient, engine: Engine) -> None:
    document = dp_client.get("/openapi.json").json()
    viewer = bearer(make_token(engine, "viewer", NOW))
    noisy = dp_client.get("/v1/picture", headers=viewer).json()
    _validate(document, "Picture", noisy)
    # A label with a field of the wrong type does not fit: the schema really checks it.
    broken = {**noisy, "privacy": {**noisy["privacy"], "epsilon": "one"}}
    with pytest.raises(jsonschema_rs.ValidationError):
        _validate(document, "Picture", broken)
    refused = dp_client.get("/v1/coverage", headers=viewer)
    assert refused.status_code == 404
    _validate(document, "ErrorResponse", refused.json())


def test_without_dp_mode_no_view_is_marked_not_published(tmp_path: Path, engine: Engine) -> None:
    app = create_app(CoordinatorSettings(data_dir=tmp_path), engine=engine, clock=lambda: NOW)
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "404" not in paths["/v1/coverage"]["get"]["responses"]
