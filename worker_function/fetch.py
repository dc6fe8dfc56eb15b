"""Safe fetching of one image URL into memory.

Every hop (the first request and each redirect) is validated, resolved and checked by the Guard,
then requested from the checked IP itself (Host header / TLS SNI carry the name), so DNS cannot
change the destination after the check. Bytes are capped while streaming, the whole fetch has
one deadline, and nothing is ever written anywhere.

A single fetch uses its own connection without keep-alive. The items of one batch share a
FetchSession (issue 17): keep-alive inside the batch only, one Channel per (scheme, host name,
port, pinned IP), so a connection opened for one name never serves another name on the same IP,
a changed DNS answer never reuses a connection to an address the Guard did not just check, and
every connection is closed when the batch ends. HTTP/1.1 itself is http1.py's (h11).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace

from .content_coding import Decoder, parse_encodings
from .errors import (
    BadRedirect,
    BadUrl,
    FetchFailed,
    FetchTimeout,
    NotAnImage,
    TooLarge,
    TooManyRedirects,
    UpstreamStatus,
)
from .http1 import ConnectFailed, Connection, ProtocolFailed, Response
from .sniff import could_be_image, sniff_format
from .ssrf import Guard
from .urls import IPAddress, Target, parse_target, resolve_redirect

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Read this much before deciding that a body is certainly not an image (HTML, JSON, ...).
_EARLY_SNIFF_BYTES = 512
# Longest redirect Location followed (browsers cap whole URLs near this; anything longer is junk).
MAX_LOCATION_CHARS = 8192
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# In a batch, redirect and error bodies up to this size are read to their end (for keep-alive),
# for at most this long; larger or slower ones cost their connection instead.
_DRAIN_BYTES = 16 * 1024
_DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 1024 * 1024
    deadline_seconds: float = 20.0
    max_redirects: int = 5


@dataclass(frozen=True)
class Fetched:
    """An image body in memory. Holders must not persist or log ``data``."""

    data: bytes
    final_url: str
    server_ip: str

    def __repr__(self) -> str:  # keep bytes out of logs and tracebacks
        return f"Fetched(final_url=<redacted>, server_ip={self.server_ip}, bytes={len(self.data)})"


class Fetcher:
    """Fetches image URLs under a Guard and FetchLimits. Holds no per-request state."""

    def __init__(
        self,
        guard: Guard,
        limits: FetchLimits | None = None,
        *,
        user_agent: str = "LIBRA-remote-hash/0.1",
        ssl_context: ssl.SSLContext | None = None,
        session: FetchSession | None = None,
    ) -> None:
        self.guard = guard
        self.limits = limits or FetchLimits()
        self.user_agent = user_agent
        # Building a context loads the CA bundle: do it once, share it across requests.
        self._ssl = ssl_context or ssl.create_default_context()
        self._session = session  # None: a client of its own per fetch, no keep-alive

    def capped(self, max_bytes: int) -> Fetcher:
        """The same fetcher with a lower byte cap (a batch item's share of its batch's bytes)."""
        if max_bytes >= self.limits.max_bytes:
            return self
        return self._with(replace(self.limits, max_bytes=max_bytes), self._session)

    def session(self, connections: int) -> FetchSession:
        """Keep-alive for the fetches of one batch (async context manager); ``connections`` per
        (name, IP) client: the batch's concurrency, so no item waits for another's connection."""
        return FetchSession(self, connections)

    def _with(self, limits: FetchLimits, session: FetchSession | None) -> Fetcher:
        return Fetcher(
            self.guard, limits, user_agent=self.user_agent, ssl_context=self._ssl, session=session
        )

    def _channel(self, target: Target, address: IPAddress, keepalive: bool) -> Channel:
        tls = self._ssl if target.scheme == "https" else None
        return Channel(_ip_text(address), target.port, tls, target.host, keepalive=keepalive)

    async def fetch(self, url: str) -> Fetched:
        target = parse_target(url)
        try:
            async with asyncio.timeout(self.limits.deadline_seconds):
                return await self._follow(target)
        except TimeoutError:
            raise FetchTimeout(
                f"fetch did not finish within {self.limits.deadline_seconds:g} s"
            ) from None

    async def _follow(self, target: Target) -> Fetched:
        if self._session is not None:
            return await self._hops(target, self._session.client)
        # Outside a batch, no keep-alive: a TLS connection opened for one name must never serve
        # another name on the same IP, and nothing should outlive the request.
        return await self._hops(target, self._one_shot)

    @asynccontextmanager
    async def _one_shot(self, target: Target, address: IPAddress) -> AsyncIterator[Channel]:
        channel = self._channel(target, address, keepalive=False)
        try:
            yield channel
        finally:
            channel.close()

    async def _hops(self, target: Target, clients: ClientFor) -> Fetched:
        redirects = 0
        while True:
            # Every hop, in a session too: the Guard checks the addresses it is about to use.
            addresses = await self.guard.addresses(target)
            outcome = await self._request(clients, target, addresses)
            if isinstance(outcome, Fetched):
                return outcome
            if redirects >= self.limits.max_redirects:
                raise TooManyRedirects(f"more than {self.limits.max_redirects} redirects")
            redirects += 1
            target = _redirect_target(target, outcome)

    async def _request(
        self, clients: ClientFor, target: Target, addresses: list[IPAddress]
    ) -> Fetched | str:
        """One hop: the image, or the Location of a redirect. Tries each checked address."""
        last_error: Exception | None = None
        for address in addresses:
            try:
                async with clients(target, address) as channel:
                    return await self._request_one(channel, target, address)
            except ConnectFailed as exc:
                last_error = exc
        raise FetchFailed(f"cannot connect to {target.host}: {last_error}")

    async def _request_one(
        self, channel: Channel, target: Target, address: IPAddress
    ) -> Fetched | str:
        try:
            response = await channel.get(target.url.raw_path, self._headers(target))
        except ProtocolFailed as exc:
            raise FetchFailed(f"request to {target.host} failed: {exc.name}") from None
        try:
            return await self._read(response, target, address)
        finally:
            channel.done(response)

    def _headers(self, target: Target) -> list[tuple[bytes, bytes]]:
        # The connection goes to the checked IP (the channel's); Host carries the name, as
        # SNI and the certificate check do over TLS.
        return [
            (b"Host", target.url.netloc),
            (b"User-Agent", self.user_agent.encode("utf-8")),
            (b"Accept", b"image/*"),
            (b"Accept-Encoding", b"identity"),
        ]

    async def _read(self, response: Response, target: Target, address: IPAddress) -> Fetched | str:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            locations = response.headers.get_list("location")
            if not locations:
                raise UpstreamStatus(f"upstream returned HTTP {status} without Location", status)
            if len(locations) > 1:
                raise BadRedirect("redirect has more than one Location header")
            await self._drain(response)
            return locations[0]  # validated (or refused as bad_redirect) by _redirect_target
        if not 200 <= status < 300 or status in (204, 205):
            await self._drain(response)
            raise UpstreamStatus(f"upstream returned HTTP {status}", status)
        declared = response.headers.get("content-length")
        if (
            declared
            and declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > self.limits.max_bytes)
        ):
            raise TooLarge(f"Content-Length {declared[:24]} exceeds {self.limits.max_bytes} bytes")
        body = await self._read_capped(response)
        if not body:
            raise NotAnImage("the response body is empty")
        return Fetched(data=body, final_url=str(target.url), server_ip=_ip_text(address))

    async def _drain(self, response: Response) -> None:
        """In a session, read a short redirect or error body to its end so that its connection
        can serve the batch's next item. Anything else (no session, no or a large
        Content-Length, a slow body) is left unread: closing the response closes the connection."""
        if self._session is None:
            return
        declared = response.headers.get("content-length") or ""
        if not (declared.isascii() and declared.isdigit()) or int(declared) > _DRAIN_BYTES:
            return
        with contextlib.suppress(ProtocolFailed, TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for _raw in response.aiter_raw():
                    if response.num_bytes_downloaded > _DRAIN_BYTES:
                        return

    async def _read_capped(self, response: Response) -> bytes:
        cap = self.limits.max_bytes
        # Raw bytes are read and decoded here, in bounded steps (content_coding.py): httpx's own
        # decoding would inflate a whole network chunk in one call, past any cap.
        decoder = Decoder(parse_encodings(response.headers.get_list("content-encoding")))
        buffer = bytearray()
        sniffed = False
        try:
            async for raw in response.aiter_raw():
                if response.num_bytes_downloaded > cap:
                    raise TooLarge(f"body exceeds {cap} bytes")
                for piece in decoder.feed(raw):
                    buffer += piece
                    # The cap holds on the decoded stream, checked after every bounded step.
                    if len(buffer) > cap:
                        raise TooLarge(f"decoded body exceeds {cap} bytes")
                    if not sniffed and len(buffer) >= _EARLY_SNIFF_BYTES:
                        sniffed = True
                        _refuse_early(bytes(buffer[:_EARLY_SNIFF_BYTES]))
                    # Let other requests (and /healthz) run, and the deadline fire, mid-body.
                    await asyncio.sleep(0)
        except ProtocolFailed as exc:
            raise FetchFailed(f"reading the body failed: {exc.name}") from None
        return bytes(buffer)


class Channel:
    """The requests of one (scheme, host name, port, pinned IP) key, one at a time, over at most
    one connection: opened on first use, kept between requests when ``keepalive`` and the
    response allows, opened afresh after one closed."""

    def __init__(
        self,
        address: str,
        port: int,
        tls: ssl.SSLContext | None,
        server_hostname: str,
        *,
        keepalive: bool,
    ) -> None:
        self._address = address
        self._port = port
        self._tls = tls
        self._server_hostname = server_hostname
        self._keepalive = keepalive
        self._connection: Connection | None = None

    @property
    def destination(self) -> tuple[str, int, bool, str]:
        """Where its connections go: (checked IP, port, TLS?, the name TLS verifies and sends)."""
        return self._address, self._port, self._tls is not None, self._server_hostname

    async def get(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
        """``GET target``; ConnectFailed if no connection could be made (try another address)."""
        connection = self._connection
        if connection is not None and connection.reusable:
            try:
                return await connection.get(target, headers)
            except ProtocolFailed as exc:
                if not exc.before_response:
                    raise
                # The peer had closed the idle connection: once more, on a new one (a GET).
        self._connection = connection = await Connection.open(
            self._address, self._port, tls=self._tls, server_hostname=self._server_hostname
        )
        return await connection.get(target, headers)

    def done(self, response: Response) -> None:
        """The response is finished with: keep its connection for the next request or close."""
        if self._connection is not None:
            if self._keepalive:
                self._connection.done(response)
            else:
                self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# The channel for one hop, held while the hop runs: (target, checked address) -> channel.
ClientFor = Callable[[Target, IPAddress], AbstractAsyncContextManager[Channel]]
ClientKey = tuple[str, str, int, str]  # scheme, host name, port, pinned IP


class FetchSession:
    """The channels of one batch, with keep-alive inside it only (``async with``).

    Channels are kept per (scheme, host name, port, pinned IP): keyed by name, a connection only
    ever speaks to one name (a TLS connection is verified for one name); keyed by IP too, a DNS
    answer that changes mid-batch never reuses a connection to an address the Guard did not
    check for this hop. A channel serves one hop at a time (a hop takes an idle channel of its
    key, else a new one, up to ``connections`` per key). All connections are closed when the
    session ends, by success, error or cancellation.
    """

    def __init__(self, fetcher: Fetcher, connections: int) -> None:
        self._fetcher = fetcher
        self._connections = max(1, connections)
        self._idle: dict[ClientKey, asyncio.Queue[Channel]] = {}
        self._made: dict[ClientKey, int] = {}
        self._channels: list[Channel] = []
        self._closed = False

    @property
    def open_clients(self) -> int:
        """Channels (at most one connection each) this session holds."""
        return len(self._channels)

    def fetcher(self, max_bytes: int | None = None) -> Fetcher:
        """The session's fetcher, under a lower byte cap if given (a batch item's share)."""
        base = self._fetcher if max_bytes is None else self._fetcher.capped(max_bytes)
        return base._with(base.limits, self)

    @asynccontextmanager
    async def client(self, target: Target, address: IPAddress) -> AsyncIterator[Channel]:
        """A channel of this (name, IP) key for one hop; back to the key's idle ones after."""
        if self._closed:
            raise FetchFailed("the batch's fetch session is closed")
        key = (target.scheme, target.host, target.port, _ip_text(address))
        idle = self._idle.setdefault(key, asyncio.Queue())
        if idle.empty() and self._made.get(key, 0) < self._connections:
            self._made[key] = self._made.get(key, 0) + 1
            channel = self._fetcher._channel(target, address, keepalive=True)
            self._channels.append(channel)
        else:
            channel = await idle.get()  # the item's deadline bounds this wait
        try:
            yield channel
        finally:
            if self._closed:
                channel.close()
            else:
                idle.put_nowait(channel)

    async def __aenter__(self) -> FetchSession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection. The closing itself is synchronous, so a cancelled batch
        closes them too; the one pass of the loop after it lets the sockets go at once."""
        self._closed = True
        channels, self._channels = self._channels, []
        self._idle.clear()
        for channel in channels:
            channel.close()
        if channels:
            await asyncio.sleep(0)  # transports release their sockets in a call_soon callback


def _redirect_target(current: Target, location: str) -> Target:
    """The next hop; a Location that is not an acceptable URL is the target's fault."""
    if len(location) > MAX_LOCATION_CHARS:
        raise BadRedirect(f"redirect Location is longer than {MAX_LOCATION_CHARS} characters")
    location = location.strip()
    if not location:
        raise BadRedirect("redirect Location is empty")
    scheme = _SCHEME.match(location)
    if scheme is not None and not location[scheme.end() :].startswith("//"):
        # RFC 3986: "http:127.0.0.1:1/x" is an absolute URI without a host, not a relative path.
        raise BadRedirect("redirect Location has a scheme but no host")
    try:
        return resolve_redirect(current, location)
    except BadUrl as exc:
        raise BadRedirect(f"redirect Location is not acceptable: {exc.message}") from None
    except (ValueError, UnicodeError):
        raise BadRedirect("redirect Location does not parse") from None


def _refuse_early(prefix: bytes) -> None:
    """Stop downloading a body that is certainly not an image (raises the precise error)."""
    if not could_be_image(prefix):
        sniff_format(prefix)
        raise NotAnImage("the content is not an image")


def _ip_text(address: IPAddress) -> str:
    return address.compressed if isinstance(address, ipaddress.IPv6Address) else str(address)


__all__ = ["FetchLimits", "FetchSession", "Fetched", "Fetcher", "parse_target"]
