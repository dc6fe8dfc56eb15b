"""The coordinator's OpenAPI document: request bodies of the raw-body routes, security
schemes and the error responses the API really gives.

The report and rotation routes read their bodies themselves (the signed bytes matter), so
FastAPI cannot infer their schemas; ``openapi_extra`` on those routes points at the schemas
added here. Every error is ``{"error": {"code", "message"}}`` (docs/protocol.md §1), never
FastAPI's default validation shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from protocol import KEY_ROTATION_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE
from protocol.dsse import Envelope
from protocol.models import ErrorResponse, KeyRotation, Report

_REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


REPORT_BODY = _json_body(
    {"$ref": "#/components/schemas/ReportEnvelope"},
    "A DSSE envelope (docs/protocol.md §2) whose base64 payload is the RFC 8785 canonical "
    f"JSON of a report (schema ReportPayload, payload type {REPORT_PAYLOAD_TYPE!r}).",
)
BATCH_BODY = _json_body(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["envelopes"],
        "properties": {
            "envelopes": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/ReportEnvelope"},
            }
        },
    },
    "Several report envelopes; each is verified and stored on its own.",
)
NODE_ROTATE_BODY = _json_body(
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["announcement", "proof"],
        "properties": {
            "announcement": {"$ref": "#/components/schemas/KeyRotationEnvelope"},
            "proof": {"$ref": "#/components/schemas/KeyRotationEnvelope"},
        },
    },
    "The same KeyRotationPayload signed by the current key (announcement) and by the new key "
    f"(proof), payload type {KEY_ROTATION_PAYLOAD_TYPE!r}.",
)

# Codes of docs/protocol.md §1 by status, for the signed-message routes.
_REPORT_ERRORS = {
    "400": "malformed_envelope, unknown_payload_type, unsupported_version, stale_timestamp",
    "401": "unknown_key, bad_signature",
    "403": "revoked_key, node_not_active, key_mismatch, unknown_node, expired_key",
    "409": "replayed_report, sequence_regression, sequence_gap",
    "413": "too_large",
    "415": "unsupported_media_type",
    "422": "malformed_payload, bad_period, sketch_mismatch",
    "429": "rate_limited (with Retry-After)",
}
_BATCH_ERRORS = {
    "413": "too_large (body or number of envelopes)",
    "415": "unsupported_media_type",
    "422": 'invalid_request: the body is not strict JSON or not {"envelopes": [...]}',
}
_UNAVAILABLE = "unavailable: a server fault (never bad input); retry after Retry-After seconds"


def _schemas() -> dict[str, Any]:
    """Component schemas: the envelopes (with the payload's schema named) and the payloads."""
    out: dict[str, Any] = {}

    def add(name: str, model: type[BaseModel]) -> None:
        schema = model.model_json_schema(by_alias=True, ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[name] = schema

    add("ReportPayload", Report)
    add("KeyRotationPayload", KeyRotation)
    add("ErrorResponse", ErrorResponse)
    for name, payload, payload_type in (
        ("ReportEnvelope", "ReportPayload", REPORT_PAYLOAD_TYPE),
        ("KeyRotationEnvelope", "KeyRotationPayload", KEY_ROTATION_PAYLOAD_TYPE),
    ):
        envelope = Envelope.model_json_schema(by_alias=True, ref_template=_REF)
        out.update(envelope.pop("$defs", {}))
        properties = envelope["properties"]
        properties["payloadType"] = {"type": "string", "enum": [payload_type]}
        properties["payload"] = {
            "type": "string",
            "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
            "contentEncoding": "base64",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": _REF.format(model=payload)},
            "description": f"Standard base64 of the RFC 8785 canonical JSON of a {payload}.",
        }
        envelope["title"] = name
        out[name] = envelope
    return out


def _uses_principal(route: APIRoute) -> bool:
    from .deps import _principal

    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is _principal:
            return True
        pending.extend(dependant.dependencies)
    return False


def install(app: FastAPI, *, anonymous_viewer: bool) -> None:
    """Replace ``app.openapi`` with one that adds the schemas, security and error responses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.update(_schemas())
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (lbr_<id>_<secret>, docs/operations-coordinator.md) "
                "or, when OIDC is configured, an OIDC access token (JWT).",
            }
        }
        secured = {
            (route.path, method.lower())
            for route in app.routes
            if isinstance(route, APIRoute) and _uses_principal(route)
            for method in route.methods or ()
        }
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if "422" in responses:  # FastAPI's default shape is not what we send
                    responses["422"] = {"description": "invalid_request"}
                if (path, method) in secured:
                    # Anonymous viewers (if the federation allows them) need no token.
                    operation["security"] = [{"bearerAuth": []}] + (
                        [{}] if anonymous_viewer else []
                    )
                    responses.setdefault("401", {"description": "unauthenticated"})
                    responses.setdefault("403", {"description": "forbidden"})
                if path in ("/v1/reports", "/v1/keys/rotate"):
                    for status, codes in _REPORT_ERRORS.items():
                        responses.setdefault(status, {"description": codes})
                if path == "/v1/reports/batch":  # per-envelope codes travel in the 200 body
                    for status, codes in _BATCH_ERRORS.items():
                        responses.setdefault(status, {"description": codes})
                responses.setdefault("503", {"description": _UNAVAILABLE})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {"application/json": {"schema": ERROR_REF}}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
