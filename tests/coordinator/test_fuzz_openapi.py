"""Schemathesis over the coordinator's own OpenAPI document (issue 12): every operation, with
and without an admin token, never answers 5xx, and a refused request changes no row."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings

from .conftest import NOW
from .helpers import fixed_key, make_token, register

EXAMPLES = int(os.environ.get("LIBRA_FUZZ_EXAMPLES", "60")) // 6 or 1
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Engine, str]]:
    from coordinator.db import make_engine

    tmp: Path = tmp_path_factory.mktemp("openapi-fuzz")
    engine = make_engine(f"sqlite:///{tmp / 'coordinator.db'}")
    app = create_app(CoordinatorSettings(data_dir=tmp), engine=engine, clock=lambda: NOW)
    register(engine, "node-a", "DE", fixed_key(1), NOW)
    token = make_token(engine, "admin", NOW)
    yield schemathesis.openapi.from_asgi("/openapi.json", app), engine, token
    engine.dispose()


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows of every coordinator table (those in this database; other components' models may
    share SQLModel's metadata in one test process)."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in SQLModel.metadata.tables.items()
            if name in present
        }


def _operations() -> list[str]:
    # Every operation the document lists (collected with an in-memory database).
    from coordinator.db import make_engine

    engine = make_engine("sqlite://")
    document = create_app(CoordinatorSettings(), engine=engine, clock=lambda: NOW).openapi()
    engine.dispose()
    return [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    ]


def test_raw_body_routes_have_real_request_schemas() -> None:
    from coordinator.db import make_engine

    app = create_app(CoordinatorSettings(), engine=make_engine("sqlite://"), clock=lambda: NOW)
    document = app.openapi()
    for path in ("/v1/reports", "/v1/reports/batch", "/v1/keys/rotate"):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert "application/json" in body["content"]
    schemas = document["components"]["schemas"]
    envelope = schemas["ReportEnvelope"]
    assert envelope["properties"]["payload"]["contentSchema"] == {
        "$ref": "#/components/schemas/ReportPayload"
    }
    assert set(schemas["ReportPayload"]["required"]) >= {"cells", "period", "sequence"}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    picture = document["paths"]["/v1/picture"]["get"]
    assert picture["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/v1/reports"]["post"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            error = operation["responses"]["503"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    assert "HTTPValidationError" not in schemas


@pytest.mark.parametrize("label", _operations())
def test_no_operation_answers_5xx_or_changes_rows_when_refusing(
    world: tuple[Any, Engine, str], label: str
) -> None:
    schema, engine, token = world
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(), with_token=st.booleans())
    def check(case: Any, with_token: bool) -> None:
        before = row_counts(engine)
        headers = {"authorization": f"Bearer {token}"} if with_token else {}
        response = case.call(headers=headers)
        assert response.status_code < 500, (label, case.body, response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message"}
            assert row_counts(engine) == before, (label, response.text)

    check()
