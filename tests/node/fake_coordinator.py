"""A tiny coordinator on loopback for outbox tests: verifies DSSE, checks sequences, acks."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nacl.signing import VerifyKey

from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import parse_envelope, verify
from protocol.errors import ProtocolError, SequenceRegression, UnknownKey
from protocol.models import Report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CoordinatorState:
    keys: dict[str, VerifyKey] = field(default_factory=dict)
    reports: dict[str, bytes] = field(default_factory=dict)
    last_sequence: dict[str, int] = field(default_factory=dict)
    received: list[Report] = field(default_factory=list)
    fail_with: int | None = None  # answer every request with this status (e.g. 503)


def make_app(state: CoordinatorState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/reports")
    async def reports(request: Request) -> Any:
        if state.fail_with is not None:
            return JSONResponse(
                {"error": {"code": "unavailable", "message": "try later"}}, state.fail_with
            )
        try:
            envelope = parse_envelope(await request.body())

            def resolve(key_id: str) -> VerifyKey:
                if key_id not in state.keys:
                    raise UnknownKey(f"key {key_id} is not registered")
                return state.keys[key_id]

            _, payload = verify(envelope, REPORT_PAYLOAD_TYPE, resolve)
            report = Report.from_payload(payload)
            if state.reports.get(report.report_id) == payload:
                return {"report_id": report.report_id, "status": "duplicate"}
            if report.sequence <= state.last_sequence.get(report.node_id, 0):
                raise SequenceRegression(f"sequence {report.sequence} is not increasing")
        except ProtocolError as exc:
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message}}, exc.http_status
            )
        state.reports[report.report_id] = payload
        state.last_sequence[report.node_id] = report.sequence
        state.received.append(report)
        return {"report_id": report.report_id, "status": "accepted"}

    return app


class RunningApp:
    """An ASGI app served by uvicorn on host:port (loopback) in a background thread."""

    def __init__(self, app: Any, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://{host}:{port}"

    def __enter__(self) -> RunningApp:
        self.thread.start()
        # Until started or dead, however slowly (pytest-timeout bounds a hang).
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("fake server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class RunningCoordinator(RunningApp):
    def __init__(self, state: CoordinatorState, port: int) -> None:
        super().__init__(make_app(state), port)
