"""``data:`` image URIs: the node sends inline images as data, the function decodes them here.

A ``data:image/<type>[;param=value]*;base64,<payload>`` URI carries the image itself, so there is
nothing to fetch: its bytes are decoded in memory and hashed like a fetched body. Anything else
that starts with ``data:`` (not an image type, not base64, bad base64, too large) is a ``BadUrl``
or ``TooLarge`` with a specific message. The bytes are never written anywhere or logged.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Protocol

from .errors import BadUrl, TooLarge

# media type, optional parameters, mandatory ";base64" (RFC 2397); the payload is after the comma.
_HEADER = re.compile(r"^data:(image/[a-z0-9.+-]+)((?:;[a-z0-9!#$&^_.+-]+=[^;,]*)*);base64$", re.I)


@dataclass(frozen=True)
class InlineImage:
    """The bytes of a data: URI, held in memory only (same shape as ``fetch.Fetched``)."""

    data: bytes
    final_url: str
    server_ip: str | None = None  # no server: the image came with the request

    def __repr__(self) -> str:  # keep bytes out of logs and tracebacks
        return f"InlineImage(bytes={len(self.data)})"


class _Source(Protocol):
    @property
    def data(self) -> bytes: ...

    @property
    def final_url(self) -> str: ...

    @property
    def server_ip(self) -> str | None: ...


class _FetcherLike(Protocol):
    async def fetch(self, url: str) -> _Source: ...


def is_data_uri(url: str) -> bool:
    return url[:5].lower() == "data:"


def decode_data_uri(url: str, *, max_bytes: int) -> InlineImage:
    """The image bytes of ``url``; BadUrl if it is not a base64 image data: URI."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise BadUrl("data: URI has no ',' before its payload")
    if _HEADER.match(header) is None:
        raise BadUrl("data: URI must be data:image/<type>[;params];base64,<payload>")
    # 4 base64 characters carry 3 bytes: refuse before decoding anything over the limit.
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise TooLarge(f"inline image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadUrl("data: URI payload is not valid base64") from None
    if not data:
        raise BadUrl("data: URI payload is empty")
    if len(data) > max_bytes:
        raise TooLarge(f"inline image is larger than {max_bytes} bytes")
    return InlineImage(data=data, final_url="data:", server_ip=None)


async def obtain(fetcher: _FetcherLike, url: str, *, max_bytes: int) -> _Source:
    """The image for ``url``: decoded from a data: URI, else fetched by ``fetcher``."""
    if is_data_uri(url):
        return decode_data_uri(url, max_bytes=max_bytes)
    return await fetcher.fetch(url)
