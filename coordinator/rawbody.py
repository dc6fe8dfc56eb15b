"""Raw request bodies for the signed-message endpoints (reports, batches, key rotation).

These routes read the exact bytes themselves (signatures cover bytes, and the strict parser
must see them before anything else does), so the media type and size checks live here.
"""

from __future__ import annotations

from fastapi import Request

from protocol.errors import UnsupportedMediaType

from .errors import InvalidRequest, TooLarge

JSON_MEDIA_TYPE = "application/json"


def require_json(request: Request) -> None:
    """``Content-Type: application/json`` (parameters allowed; a charset must be UTF-8)."""
    header = request.headers.get("content-type")
    if header is None:
        raise UnsupportedMediaType(f"Content-Type must be {JSON_MEDIA_TYPE}")
    media_type, *parameters = (part.strip() for part in header.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {JSON_MEDIA_TYPE}, not {media_type!r}")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType("JSON bodies are UTF-8")


async def read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing early on Content-Length and while streaming (chunked bodies)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise InvalidRequest("Content-Length is not a number") from None
        if too_big:
            raise TooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
