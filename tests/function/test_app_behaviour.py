"""App behaviour that needs no real server: lab warning, log hygiene, unexpected failures."""

from __future__ import annotations

import logging

import httpx
import pytest

from protocol.lab import LabNetwork
from tests.function.conftest import LAB_HOST
from tests.function.helpers import ImageServer
from worker_function import isolation
from worker_function.app import create_app
from worker_function.settings import FunctionSettings
from worker_function.urls import url_ref


def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://function.test")


def test_lab_mode_logs_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker_function"):
        create_app(FunctionSettings(lab=None), lab=LabNetwork())
    assert any(
        r.levelno == logging.WARNING and "LAB MODE" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="worker_function"):
        create_app(FunctionSettings(lab=None, require_auth=False))
    assert not any("LAB MODE" in r.getMessage() for r in caplog.records)


def test_lab_mode_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBRA_FUNCTION_LAB", raising=False)
    settings = FunctionSettings(require_auth=False)
    assert settings.lab is None
    app = create_app(settings)
    assert app.state.lab_mode is False


def test_lab_file_from_settings(tmp_path: object, image_server: ImageServer) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "lab.toml"
    path.write_text(f'allow_ports = [{image_server.port}]\n[hosts]\n"{LAB_HOST}" = "127.0.0.1"\n')
    app = create_app(FunctionSettings(lab=path))
    assert app.state.lab_mode is True


async def test_logs_never_contain_the_url(
    caplog: pytest.LogCaptureFixture, lab: LabNetwork, base_url: str
) -> None:
    app = create_app(FunctionSettings(lab=None, decode_isolation="thread"), lab=lab)
    secret = f"{base_url}/a.jpg?token=do-not-log-me"
    missing = f"{base_url}/missing-do-not-log.jpg"
    with caplog.at_level(logging.INFO):
        async with _client(app) as client:
            assert (await client.post("/v1/analyze", json={"url": secret})).status_code == 200
            assert (await client.post("/v1/analyze", json={"url": missing})).status_code == 502
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert url_ref(secret) in text and url_ref(missing) in text
    assert "do-not-log" not in text and LAB_HOST not in text


async def test_unexpected_failure_is_a_json_502(
    monkeypatch: pytest.MonkeyPatch, lab: LabNetwork, base_url: str
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(isolation, "hash_image", explode)
    app = create_app(FunctionSettings(lab=None, decode_isolation="thread"), lab=lab)
    async with _client(app) as client:
        response = await client.post("/v1/analyze", json={"url": f"{base_url}/a.jpg"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "analysis_failed"
    assert "secret internals" not in error["message"]
