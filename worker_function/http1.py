"""A lean HTTP/1.1 client connection for image fetches: h11's parser over asyncio streams.

Why not httpx here (issue 17): the function fetches two small resources per crawled page (the
image and, often, an og:image that is not there). Through httpx each fetch cost ~1.1 ms of CPU
(URL re-parsing, pools, events, anyio); the same request through h11 directly costs ~0.2 ms.
The function's event loop was the cycle's bottleneck, so this is where a hand-written piece
pays. Parsing stays h11's (the same parser httpx uses underneath): request framing,
Content-Length and chunked bodies, header size bounds, 1xx responses, keep-alive rules.

What a Connection does: connect to one given address (already checked by the Guard), with TLS
verifying the host name it is given (SNI and certificate) when asked; send one GET at a time;
hand back the status, headers and the raw body in pieces. What it never does: resolve names,
follow redirects, decode Content-Encoding, use proxies or the environment (fetch.py,
content_coding.py and ssrf.py own those). A connection is reused only after a response was read
to its end and both sides allow keep-alive; anything else (an error, a cancellation, a body left
unread) closes it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import h11

# Largest response head (status line and headers) accepted: h11's bound on an incomplete event.
MAX_HEAD_BYTES = 64 * 1024
_READ_BYTES = 64 * 1024


class ConnectFailed(Exception):
    """No connection to this address (refused, unreachable, TLS handshake or certificate)."""


class ProtocolFailed(Exception):
    """The connection broke or the peer did not speak HTTP/1.1; ``name`` says how."""

    def __init__(self, name: str, *, before_response: bool = False) -> None:
        super().__init__(name)
        self.name = name
        # Nothing of a response arrived: on a reused connection, the request may be retried.
        self.before_response = before_response


class Headers:
    """A response's headers, names lower-cased, values decoded as httpx decodes them."""

    __slots__ = ("_items",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._items = [(name.decode("ascii").lower(), _text(value)) for name, value in raw]

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (lower-case), or None."""
        for key, value in self._items:
            if key == name:
                return value
        return None

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` as sent, one per header line (commas are not split)."""
        return [value for key, value in self._items if key == name]


class Response:
    """One response on a Connection; read its body with ``aiter_raw`` (at most once)."""

    def __init__(self, connection: Connection, status_code: int, headers: Headers) -> None:
        self._connection = connection
        self.status_code = status_code
        self.headers = headers
        self.num_bytes_downloaded = 0
        self.complete = False  # the body was read to its end

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as sent (no Content-Encoding decoded), piece by piece."""
        connection = self._connection
        while not self.complete:
            event = await connection._next_event()
            if isinstance(event, h11.Data):
                self.num_bytes_downloaded += len(event.data)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            else:  # a ConnectionClosed mid-body is turned into ProtocolFailed by _next_event
                raise ProtocolFailed("UnexpectedEvent")


class Connection:
    """One TCP (or TLS) connection to one checked address, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._broken = False

    @classmethod
    async def open(
        cls,
        address: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Connection:
        """Connect to ``address`` (never a name: the caller pinned it). With ``tls``, the
        certificate is verified for ``server_hostname``, which also goes out as SNI."""
        try:
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
                limit=_READ_BYTES,
            )
        except (OSError, ssl.SSLError, EOFError) as exc:  # EOFError: peer closed mid-handshake
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        return cls(reader, writer)

    @property
    def reusable(self) -> bool:
        """Idle, alive, and allowed to carry another request."""
        return (
            not self._broken
            and self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    async def get(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
        """Send ``GET target`` and read the response head (1xx responses are skipped)."""
        if not self.reusable:
            raise ProtocolFailed("ConnectionNotReusable", before_response=True)
        try:
            try:
                request = self._h11.send(h11.Request(method=b"GET", target=target, headers=headers))
            except h11.LocalProtocolError:
                raise ProtocolFailed("LocalProtocolError") from None  # e.g. a bad header value
            self._writer.write((request or b"") + (self._h11.send(h11.EndOfMessage()) or b""))
            received_nothing = True
            while True:
                event = await self._next_event(first=received_nothing)
                received_nothing = False
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    return Response(self, event.status_code, Headers(list(event.headers)))
                raise ProtocolFailed("UnexpectedEvent")
        except BaseException:
            self.close()
            raise

    def done(self, response: Response) -> None:
        """After a response: keep the connection for the next request if its body was read to
        the end and both sides keep it alive, else close it."""
        done = self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
        if response.complete and done:
            try:
                self._h11.start_next_cycle()
                return
            except h11.LocalProtocolError:
                pass
        self.close()

    def close(self) -> None:
        self._broken = True
        self._writer.close()  # no wait for the peer: the socket is released at once

    async def _next_event(self, *, first: bool = False) -> object:
        try:
            while True:
                event = self._h11.next_event()
                if event is not h11.NEED_DATA:
                    if isinstance(event, h11.ConnectionClosed):
                        raise ProtocolFailed("RemoteProtocolError", before_response=first)
                    return event
                data = await self._reader.read(_READ_BYTES)
                if not data and first:
                    # The peer closed before any byte of a response (e.g. an idle keep-alive
                    # connection it had just timed out): the request may be sent again.
                    raise ProtocolFailed("RemoteProtocolError", before_response=True)
                first = False  # a byte of the answer arrived: a failure now is not a retry
                self._h11.receive_data(data)
        except h11.RemoteProtocolError:
            self._broken = True
            raise ProtocolFailed("RemoteProtocolError", before_response=False) from None
        except OSError as exc:  # reset, aborted, TLS alert, unreachable mid-response
            self._broken = True
            raise ProtocolFailed("ReadError", before_response=first) from exc


def _text(value: bytes) -> str:
    # httpx's order: ASCII, else UTF-8, else Latin-1 (which decodes anything).
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


__all__ = ["ConnectFailed", "Connection", "Headers", "ProtocolFailed", "Response"]
