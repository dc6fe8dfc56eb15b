"""HTTP client for the crawler: destinations are resolved and checked by us, then pinned.

httpx would resolve host names itself, after any check we made (a DNS answer can change between
check and connect). So the transport resolves once, checks the address, and sends the request to
that IP literal while keeping the ``Host`` header (and TLS SNI) as the name.

- Lab mode: names resolve ONLY through the static ``LabNetwork`` map; IP literals must lie in the
  lab's allowed loopback ranges; ports are 80/443 plus the lab's ``allow_ports``; plain http only.
- Production: normal DNS, but every answer must be a global (public) address, so the crawler never
  reaches loopback, private, link-local or reserved space.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable

import httpx

from protocol.lab import LabNetwork

DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64 well-known prefix: the low 32 bits are an IPv4 address that must be checked as such.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Awaitable[str]]
# Response extension naming the address that served the response (the pinned IP): the crawler
# attributes each fetched page by it, as sightings are attributed by the image's server IP.
SERVER_IP = "libra.server_ip"


class BlockedDestination(httpx.RequestError):
    """The request's destination is not one this client may reach (checked before connecting)."""


def is_public_address(ip: str) -> bool:
    """True for globally routable unicast addresses only (IPv4-in-IPv6 forms are unwrapped)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.is_global and not address.is_multicast


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def lab_resolver(lab: LabNetwork) -> Resolver:
    """Resolve through the lab map only; anything unmapped or outside the lab is refused."""
    ports = {80, 443, *lab.allow_ports}

    async def resolve(host: str, port: int) -> str:
        if port not in ports:
            raise BlockedDestination(f"port {port} is not allowed in the lab")
        ip = _ip_literal(host) or lab.resolve(host)
        if ip is None:
            raise BlockedDestination(f"host {host!r} is not in the lab map")
        if not lab.allows(ip):
            raise BlockedDestination(f"address {ip} is outside the lab's allowed ranges")
        return ip

    return resolve


async def public_resolver(host: str, port: int) -> str:
    """Resolve with the system resolver; refuse if ANY answer is not a public address.

    Refusing on any (rather than picking a public one) keeps a name that mixes public and internal
    answers from being used as a pivot.
    """
    literal = _ip_literal(host)
    if literal is not None:
        candidates = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        candidates = [str(info[4][0]) for info in infos]
        if not candidates:
            raise httpx.ConnectError(f"cannot resolve {host!r}: no addresses")
    for ip in candidates:
        if not is_public_address(ip.split("%", 1)[0]):
            raise BlockedDestination(f"{host!r} resolves to non-public address {ip}")
    return candidates[0].split("%", 1)[0]


class PinnedTransport(httpx.AsyncBaseTransport):
    """Resolve + check the destination, then send the request to the IP literal.

    Every host name gets its own small connection pool. For https this is required: a TLS
    connection verified for one name must not carry requests for another name served from the
    same IP. For http it is a matter of speed: httpcore scans a whole pool for every request, so
    one pool shared by hundreds of hosts costs O(connections) per request (issue 5 benchmark).
    Idle connections close after httpx's keep-alive expiry, so idle pools hold no sockets.
    """

    def __init__(
        self,
        resolve: Resolver,
        *,
        schemes: frozenset[str],
        limits: httpx.Limits,
    ) -> None:
        self._resolve = resolve
        self._schemes = schemes
        self._limits = limits
        self._pools: dict[tuple[str, str], httpx.AsyncHTTPTransport] = {}
        # One TLS context for every pool: httpx builds a new one (loading the CA bundle, ~17 ms
        # of CPU) for each transport otherwise, which a crawl of thousands of hosts pays per
        # host. Sharing it is safe: each connection verifies its own name (sni_hostname below).
        self._tls: ssl.SSLContext | None = None

    def _new_inner(self) -> httpx.AsyncHTTPTransport:
        if self._tls is None:
            self._tls = httpx.create_ssl_context(trust_env=False)
        return httpx.AsyncHTTPTransport(
            verify=self._tls, limits=self._limits, trust_env=False, retries=0
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in self._schemes:
            raise BlockedDestination(f"scheme {url.scheme!r} is not allowed", request=request)
        host = url.host
        if not host:
            raise BlockedDestination("URL has no host", request=request)
        port = url.port or DEFAULT_PORTS[url.scheme]
        try:
            ip = await self._resolve(host, port)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        key = (url.scheme, host)
        inner = self._pools.get(key) or self._pools.setdefault(key, self._new_inner())
        # A new Request object: the caller's request (and so response.url) keeps the host name.
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=ip),
            headers=request.headers,  # already carries Host: <name>
            stream=request.stream,
            extensions=extensions,
        )
        response = await inner.handle_async_request(pinned)
        response.extensions[SERVER_IP] = ip
        return response

    async def aclose(self) -> None:
        for inner in self._pools.values():
            await inner.aclose()
        self._pools.clear()


def make_client(
    lab: LabNetwork | None,
    *,
    timeout: float,
    user_agent: str,
    max_connections: int = 32,
) -> httpx.AsyncClient:
    """The crawler's client: no proxies from the environment, no automatic redirects.

    Redirects are left to the caller so that it can re-check scope (and robots) at every hop; each
    hop still goes through the destination check here.
    """
    # Per host-name pool (see PinnedTransport); the crawler's own semaphores bound the total.
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=min(max_connections, 8)
    )
    if lab is not None:
        transport = PinnedTransport(lab_resolver(lab), schemes=frozenset({"http"}), limits=limits)
    else:
        transport = PinnedTransport(
            public_resolver, schemes=frozenset({"http", "https"}), limits=limits
        )
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": user_agent},
    )
