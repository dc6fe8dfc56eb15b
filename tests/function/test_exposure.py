"""What the function exposes besides /v1/analyze and /healthz: /metrics and the API description
(/openapi.json, /docs, /redoc) are closed in production unless configured, open in lab mode."""

from __future__ import annotations

import httpx
import pytest

from protocol.lab import LabNetwork
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

EXTRAS = ("/metrics", "/openapi.json", "/docs", "/redoc")
LAB = LabNetwork(hosts={}, allow_ports=[])


async def _statuses(settings: FunctionSettings, lab: LabNetwork | None) -> dict[str, int]:
    app = create_app(settings, lab=lab)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://f.test") as client:
        return {path: (await client.get(path)).status_code for path in (*EXTRAS, "/healthz")}


async def test_production_closes_metrics_and_docs_by_default() -> None:
    statuses = await _statuses(FunctionSettings(require_auth=False), None)
    assert statuses == {
        "/metrics": 404,
        "/openapi.json": 404,
        "/docs": 404,
        "/redoc": 404,
        "/healthz": 200,
    }


async def test_lab_mode_opens_them_by_default() -> None:
    statuses = await _statuses(FunctionSettings(lab=None), LAB)
    assert statuses == dict.fromkeys((*EXTRAS, "/healthz"), 200)


@pytest.mark.parametrize(
    ("metrics", "api_docs", "expected"),
    [
        (True, False, {"/metrics": 200, "/openapi.json": 404, "/docs": 404, "/redoc": 404}),
        (False, True, {"/metrics": 404, "/openapi.json": 200, "/docs": 200, "/redoc": 200}),
    ],
)
async def test_settings_decide_in_production(
    metrics: bool, api_docs: bool, expected: dict[str, int]
) -> None:
    settings = FunctionSettings(require_auth=False, metrics=metrics, api_docs=api_docs)
    statuses = await _statuses(settings, None)
    assert {path: statuses[path] for path in EXTRAS} == expected


async def test_settings_can_close_lab_mode_too() -> None:
    settings = FunctionSettings(lab=None, metrics=False, api_docs=False)
    statuses = await _statuses(settings, LAB)
    assert {path: statuses[path] for path in EXTRAS} == dict.fromkeys(EXTRAS, 404)


def test_environment_variables_set_exposure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRA_FUNCTION_METRICS", "true")
    monkeypatch.setenv("LIBRA_FUNCTION_API_DOCS", "false")
    settings = FunctionSettings(require_auth=False)
    assert settings.metrics_enabled(lab_mode=False) is True
    assert settings.api_docs_enabled(lab_mode=True) is False
