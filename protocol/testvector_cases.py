"""The case builder shared by the negative vector modules (testvector_negative and
testvector_negative_coverage): each report case is report-v1 with one defect, its own report id
and a rising sequence, signed with the fixed vector keys and stored with its body template."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import rfc8785

from . import REPORT_PAYLOAD_TYPE
from .testvector import vector_keys, vector_report
from .vector_template import Signed, envelope_template, expand

REPORTS = "/v1/reports"
JSON_TYPE = "application/json"

Payload = dict[str, Any]


def jcs(data: Any) -> bytes:
    return bytes(rfc8785.dumps(data))


def base_report() -> Payload:
    data: Payload = json.loads(vector_report().to_payload())
    return data


def case_report_id(name: str) -> str:
    # Each case its own report id, so that a lax receiver accepting one case does not turn the
    # next case into a duplicate or a replay.
    return hashlib.sha256(f"negative vector {name}".encode()).hexdigest()[:32]


def expected(status: int, code: str) -> dict[str, Any]:
    return {"http_status": status, "code": code}


class Builder:
    """Collects cases; every report case gets its own report id and a rising sequence."""

    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []
        self.keys = vector_keys()

    def report(self, name: str, edit: Callable[[Payload], None] | None = None) -> Payload:
        data = base_report()
        data["report_id"] = case_report_id(name)
        data["sequence"] = len(self.cases) + 1
        if edit is not None:
            edit(data)
        return data

    def add(
        self,
        name: str,
        description: str,
        expected: dict[str, Any],
        payload: bytes,
        *,
        template: str | None = None,
        payload_type: str = REPORT_PAYLOAD_TYPE,
        endpoint: str = REPORTS,
        content_type: str = JSON_TYPE,
        phase: str = "active",
    ) -> None:
        template = template if template is not None else envelope_template(payload_type)
        body = expand(template, Signed(payload, payload_type, self.keys))
        case: dict[str, Any] = {
            "name": name,
            "description": description,
            "method": "POST",
            "endpoint": endpoint,
            "content_type": content_type,
            "phase": phase,
            "payload_type": payload_type,
            "payload_b64": base64.b64encode(payload).decode(),
        }
        if len(payload) <= 4096:
            with contextlib.suppress(UnicodeDecodeError):
                case["payload_text"] = payload.decode("utf-8")
        case["body_template"] = template
        case["body_b64"] = base64.b64encode(body).decode()
        case["expected"] = expected
        self.cases.append(case)


def set_cell(field: str, value: Any) -> Callable[[Payload], None]:
    def edit(data: Payload) -> None:
        data["cells"][0][field] = value

    return edit
