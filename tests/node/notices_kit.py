"""Test kit for the notices: local SMTP and webhook sinks on 127.0.0.1, a fake contact resolver.

The sinks call ``on_message(address, payload)`` for every notice they receive, so a synthetic
hoster can react to the k-th notice it got (the world test removes its material then).
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from node.contacts.model import AbuseContact, HosterIdentity
from node.notices import xarf
from tests.node.fake_coordinator import RunningApp, free_port

Callback = Callable[[str, Any], None]


@dataclass
class Received:
    address: str  # a recipient mailbox, or the webhook path
    payload: Any  # EmailMessage or the parsed JSON body


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        for rcpt in envelope.rcpt_tos:
            self.sink.add(rcpt, message)
        return "250 Message accepted for delivery"


class SmtpSink:
    """aiosmtpd on 127.0.0.1: records every message per recipient."""

    def __init__(self, on_message: Callback | None = None) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.on_message = on_message
        self.lock = threading.Lock()
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def add(self, address: str, message: EmailMessage) -> None:
        with self.lock:
            self.received.append(Received(address, message))
        if self.on_message is not None:
            self.on_message(address, message)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.payload for r in self.received if r.address == address]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()


@dataclass
class WebhookSink:
    """A hoster's webhook on 127.0.0.1 that checks the HMAC signature of every POST."""

    secret: bytes
    on_message: Callback | None = None
    fail_next: int = 0  # answer the next n requests with 503
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    port: int = field(default_factory=free_port)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def hook(path: str, request: Request) -> Any:
            body = await request.body()
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "busy"}, status_code=503)
            ok = xarf.verify_webhook(
                self.secret,
                body,
                request.headers.get(xarf.TIMESTAMP_HEADER, ""),
                request.headers.get(xarf.SIGNATURE_HEADER, ""),
            )
            if not ok:
                self.rejected += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            import json

            payload = json.loads(body)
            self.received.append(Received("/" + path, payload))
            if self.on_message is not None:
                self.on_message("/" + path, payload)
            return {"ok": True}

        return app

    def __enter__(self) -> WebhookSink:
        self._running = RunningApp(self.app(), self.port)
        self._running.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.__exit__(*exc)


@dataclass
class FakeResolver:
    """Contacts by hoster name; records every look-up."""

    contacts: dict[str, AbuseContact]
    calls: list[HosterIdentity] = field(default_factory=list)

    def resolve(
        self, identity: HosterIdentity, *, ip: str | None, domain: str | None
    ) -> AbuseContact:
        self.calls.append(identity)
        return self.contacts.get(
            identity.hoster, AbuseContact((), None, "none", None, "not in the fake table")
        )


def xarf_attachments(message: EmailMessage) -> list[dict[str, Any]]:
    import json

    out = []
    for part in message.iter_attachments():
        assert part.get_content_type() == "application/json", part.get_content_type()
        out.append(json.loads(part.get_content()))
    return out
