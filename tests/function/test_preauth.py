"""Pre-authentication memory: /v1/analyze refuses before reading the body. Unsigned requests are
401 without a byte of body read; a declared Content-Length over ``max_request_bytes`` is 413
``request_too_large`` unread; a chunked body is read only up to the limit. Counted at the ASGI
boundary (every byte the app pulled from the server), over a real uvicorn socket."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from nacl.signing import SigningKey
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.keys import encode_public_key
from protocol.lab import LabNetwork
from protocol.request_auth import RequestSigner
from tests.function import helpers as h
from worker_function.app import create_app
from worker_function.settings import FunctionSettings

KEY = SigningKey(b"\x05" * 32)
PATH = "/v1/analyze"
LIMIT = 64 * 1024
HUGE = 200 * 1024 * 1024  # the 200 MB of the issue
CHUNK = 64 * 1024


@dataclass
class Counting:
    """ASGI wrapper: counts the body bytes the app actually received."""

    app: ASGIApp
    received: list[int] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        count = [0]
        self.received.append(0)
        index = len(self.received) - 1

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                count[0] += len(message.get("body", b""))
                self.received[index] = count[0]
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[h.FunctionServer, Counting]]:
    settings = FunctionSettings(
        lab=None,
        decode_isolation="thread",
        authorized_keys={"node-a": encode_public_key(KEY.verify_key)},
        metrics=True,  # the full middleware stack, which must not read the body either
    )
    counting = Counting(create_app(settings, lab=LabNetwork()))
    with h.FunctionServer(counting) as running:
        yield running, counting


def _post(
    url: str, headers: dict[str, str], total: int, chunked: bool
) -> tuple[int, dict[str, str]]:
    """POST up to ``total`` body bytes, stopping as soon as the server answers; returns the
    status and the JSON error. The client streams like an attacker: it never waits."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {PATH} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        piece = b"x" * CHUNK
        framed = f"{CHUNK:x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        sent = 0
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the answer is there: stop sending
                sock.sendall(framed)
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_response(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _signed(body_hint: bytes = b"") -> dict[str, str]:
    # The signature will not match the streamed junk; it must never get that far.
    return RequestSigner("node-a", KEY).headers("POST", PATH, body_hint)


def test_unsigned_200_mb_is_refused_unread(server: tuple[h.FunctionServer, Counting]) -> None:
    running, counting = server
    status, error = _post(running.url, {}, HUGE, chunked=False)
    assert (status, error["code"]) == (401, "unauthenticated")
    assert counting.received[-1] == 0


def test_declared_length_over_the_limit_is_413_unread(
    server: tuple[h.FunctionServer, Counting],
) -> None:
    running, counting = server
    status, error = _post(running.url, _signed(), HUGE, chunked=False)
    assert (status, error["code"]) == (413, "request_too_large")
    assert counting.received[-1] == 0


def test_chunked_200_mb_is_read_only_up_to_the_limit(
    server: tuple[h.FunctionServer, Counting],
) -> None:
    running, counting = server
    status, error = _post(running.url, _signed(), HUGE, chunked=True)
    assert (status, error["code"]) == (413, "request_too_large")
    # At most the limit plus what one read of the server delivered, never the 200 MB.
    assert LIMIT < counting.received[-1] <= LIMIT + 4 * CHUNK


def test_a_body_within_the_limit_is_read_and_verified(
    server: tuple[h.FunctionServer, Counting],
) -> None:
    import httpx

    running, counting = server
    body = json.dumps({"url": "ftp://x.test/" + "a" * 1000}).encode()
    headers = RequestSigner("node-a", KEY).headers("POST", PATH, body)
    response = httpx.post(running.url + PATH, content=body, headers=headers, trust_env=False)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_url")
    assert counting.received[-1] == len(body)


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("9" * 5000, "request_too_large"),  # int() would refuse > 4300 digits: never called
        ("99999999999999999999", "request_too_large"),
        ("²", "read"),  # not ASCII digits: ignored, the stream decides
        ("-1", "read"),
        ("", "read"),
    ],
)
async def test_odd_content_lengths_never_crash(declared: str, expected: str) -> None:
    from starlette.requests import Request

    from worker_function.app import read_body
    from worker_function.errors import RequestTooLarge

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "headers": [(b"content-length", declared.encode())],
    }
    try:
        body = await read_body(Request(scope, receive), LIMIT)
    except RequestTooLarge:
        outcome = "request_too_large"
    else:
        assert body == b"{}"
        outcome = "read"
    assert outcome == expected
