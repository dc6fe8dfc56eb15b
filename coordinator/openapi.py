"""The coordinator's OpenAPI document: request bodies of the raw-body routes, security
schemes and the error responses the API really gives.

The report and rotation routes read their bodies themselves (the signed bytes matter), so
FastAPI cannot infer their schemas; ``openapi_extra`` on those routes points at the schemas
added here. Every error is ``{"error": {"code", "message"}}`` (docs/protocol.md §1), never
FastAPI's default validation shape.

Issue 15: with ``[viewer] privacy = "dp"`` the viewer's picture and shifts carry a ``privacy``
label (schema Privacy) and a ``Libra-Privacy`` header, a spent budget answers 429
``privacy_budget_exhausted``, and views that count matches exactly answer viewers 404
``not_published``. The routes return those as plain JSON responses, so the document adds them
here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
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

# Issue 15 (coordinator/dp): the viewer tier in DP mode.
_DP_ROUTES = ("/v1/picture", "/v1/picture.csv", "/v1/picture/snapshot", "/v1/picture/shifts")
# answers that carry Libra-Privacy
_HEADED = ("/v1/picture", "/v1/picture.csv", "/v1/picture/shifts")
_PRIVACY_FIELD = {
    "anyOf": [{"$ref": "#/components/schemas/Privacy"}, {"type": "null"}],
    "description": "Present only in a viewer's answer when the coordinator publishes with "
    '[viewer] privacy = "dp": how the noisy counts were made (mechanism, epsilon spent, noise '
    "scale, unit of privacy, which figures are noisy, derived or withheld). Withheld integer "
    "figures (distinct counts, nodes per row) read 0 and are not counts.",
}
_PRIVACY_HEADER = {
    "Libra-Privacy": {
        "description": "Only in DP mode (viewer tier): the privacy label in one line, "
        '"mechanism=discrete_laplace; epsilon=E; scale=B; sensitivity=S".',
        "schema": {"type": "string"},
    }
}
_BUDGET_EXHAUSTED = (
    "privacy_budget_exhausted: DP mode only; this release would spend more epsilon on a window "
    "of report periods than its budget allows (answers already released stay free to repeat)"
)
_NOT_PUBLISHED = (
    'not_published: the coordinator publishes with [viewer] privacy = "dp" and this view counts '
    "matches exactly: served to admins only (viewers get the noisy picture)"
)
_SIGNED_LABEL = (
    "A DSSE envelope of the picture JSON, signed by the coordinator (GET /v1/coordinator/key). "
    "In DP mode a viewer's picture carries its privacy label inside the signed payload; "
    "`libra coordinator snapshot verify` prints it."
)
_NODES_NOT_PUBLISHED = "; in DP mode also the per-node breakdown (include_nodes) for viewers"


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


def _uses(dependant: Dependant, call: Any) -> bool:
    """Whether ``call`` is among a route's dependencies, however deep."""
    pending = [dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is call:
            return True
        pending.extend(dependant.dependencies)
    return False


def _dp_responses(path: str, responses: dict[str, Any]) -> None:
    """The privacy label's header and the spent budget's 429 on the picture routes."""
    if path not in _DP_ROUTES:
        return
    ok = responses.get("200")
    if ok is not None and path == "/v1/picture/snapshot":
        ok["description"] = _SIGNED_LABEL
    if ok is not None and path in _HEADED:  # (the JSON picture carries it in its body too)
        ok.setdefault("headers", {}).update(_PRIVACY_HEADER)
    if "403" in responses and path != "/v1/picture/shifts":  # the routes with include_nodes
        responses["403"]["description"] += _NODES_NOT_PUBLISHED
    responses.setdefault("429", {"description": _BUDGET_EXHAUSTED})


def _label_schemas(schemas: dict[str, Any]) -> None:
    """Issue 15: the ``privacy`` label, optional, on the picture and shifts answers."""
    from .dp.release import Privacy

    schemas["Privacy"] = Privacy.model_json_schema(
        by_alias=True, ref_template=_REF, mode="serialization"
    )
    for name in ("Picture", "Shifts"):
        if name in schemas:
            schemas[name].setdefault("properties", {})["privacy"] = dict(_PRIVACY_FIELD)


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
        _label_schemas(schemas)
        components["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (lbr_<id>_<secret>, docs/operations-coordinator.md) "
                "or, when OIDC is configured, an OIDC access token (JWT).",
            }
        }
        # Included routers' routes too (FastAPI keeps them inside the router it includes).
        routes = [
            (context.path_format, method.lower(), context.dependant)
            for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            for method in context.methods or ()
        ]
        from .deps import _principal
        from .dp.api import _refuse_viewers  # the guard itself: no second list of routes

        secured = {(path, method) for path, method, dep in routes if _uses(dep, _principal)}
        # Issue 15: routers of exact views carry the DP guard only when DP mode is on.
        guarded = {(path, method) for path, method, dep in routes if _uses(dep, _refuse_viewers)}
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
                _dp_responses(path, responses)
                if (path, method) in guarded:
                    responses.setdefault("404", {"description": _NOT_PUBLISHED})
                responses.setdefault("503", {"description": _UNAVAILABLE})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {"application/json": {"schema": ERROR_REF}}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
