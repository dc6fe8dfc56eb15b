"""The AWS Lambda handler (Mangum), driven in-process with sample API Gateway events."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from protocol.keys import encode_public_key
from protocol.request_auth import RequestSigner
from tests.function import helpers as h
from worker_function import lambda_handler
from worker_function.hashing import hash_image
from worker_function.settings import FunctionSettings

EVENTS = Path(__file__).with_name("events")
KEY = SigningKey(b"\x07" * 32)
IMAGE = h.encode(h.generated_image(5).resize((64, 48)), "JPEG", quality=80)


class Context:
    """The few attributes of a Lambda context object that adapters read."""

    function_name = "libra-function"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    memory_limit_in_mb = 1024

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def _analyze_event(signed: bool) -> dict[str, Any]:
    event = copy.deepcopy(_event("apigw_rest_analyze.json"))
    payload = {"url": "data:image/jpeg;base64," + base64.b64encode(IMAGE).decode()}
    body = json.dumps(payload).encode()
    event["body"] = body.decode()
    if signed:
        event["headers"].update(RequestSigner("node-a", KEY).headers("POST", "/v1/analyze", body))
    return event


def _settings() -> FunctionSettings:
    return FunctionSettings(
        lab=None,
        decode_isolation="thread",
        authorized_keys={"node-a": encode_public_key(KEY.verify_key)},
    )


def test_api_gateway_rest_event_is_analysed() -> None:
    handler = lambda_handler.make_handler(_settings())
    answer = handler(_analyze_event(signed=True), Context())  # type: ignore[arg-type]
    assert answer["statusCode"] == 200, answer["body"]
    result = json.loads(answer["body"])
    assert result["hashes"]["pdq"] == hash_image(IMAGE).hashes.pdq
    assert result["format"] == "JPEG" and (result["width"], result["height"]) == (64, 48)


def test_unsigned_lambda_request_is_401() -> None:
    handler = lambda_handler.make_handler(_settings())
    answer = handler(_analyze_event(signed=False), Context())  # type: ignore[arg-type]
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "unauthenticated"


def test_module_handler_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = json.dumps({"node-a": encode_public_key(KEY.verify_key)})
    monkeypatch.setenv("LIBRA_FUNCTION_AUTHORIZED_KEYS", keys)
    monkeypatch.delenv("LIBRA_FUNCTION_LAB", raising=False)
    monkeypatch.delenv("LIBRA_FUNCTION_DECODE_ISOLATION", raising=False)
    monkeypatch.setattr(lambda_handler, "_handler", None)
    assert lambda_handler.lambda_settings().decode_isolation == "thread"
    health = lambda_handler.handler(_event("http_api_v2_healthz.json"), Context())
    assert health["statusCode"] == 200
    assert json.loads(health["body"]) == {"status": "ok"}
    analysed = lambda_handler.handler(_analyze_event(signed=True), Context())
    assert analysed["statusCode"] == 200, analysed["body"]
