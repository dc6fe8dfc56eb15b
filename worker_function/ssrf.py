"""The SSRF guard: which addresses and ports the function may connect to.

Production: a name is resolved (all A/AAAA records) and refused if ANY address is not globally
routable; only ports 80/443 (plus configured extras) are allowed. The fetcher then connects to
the checked address itself, so a second DNS answer (rebinding) cannot redirect the connection.

Lab mode: names resolve ONLY through the lab's static host map (never DNS), and every address must
lie inside the lab's loopback ranges. Nothing outside loopback is reachable in lab mode.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from protocol.lab import LabNetwork

from .errors import BlockedAddress, FetchFailed
from .urls import IPAddress, Target

# host, port -> every address the name resolves to (as text).
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS = frozenset({80, 443})

# Explicit deny-lists on top of ``is_global``: the stdlib's view differs between Python releases
# and misses some (multicast counts as "global" in 3.11).
_DENY_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_DENY_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",
        "fc00::/7",  # unique local
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
# Cloud metadata and host-agent endpoints. Most already fall in a denied range (link-local, CGNAT,
# unique-local), but Azure's wire server is a *public* address, so this list is checked first and
# named in the refusal.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "168.63.129.16",  # Azure wire server / host agent (public address space)
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6 (Nitro)
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from, or None if it is a public unicast address."""
    if address in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            return None if inner is None else f"embeds {embedded}, which {inner}"
        if any(address in net for net in _DENY_V6):
            return "is in a reserved or private IPv6 range"
    elif any(address in net for net in _DENY_V4):
        return "is in a reserved or private IPv4 range"
    for flag in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
        "is_unspecified",
        "is_site_local",
    ):
        if getattr(address, flag, False):
            return f"is not public ({flag.removeprefix('is_').replace('_', '-')})"
    if not address.is_global:
        return "is not globally routable"
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries (mapped, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address (Teredo is denied as a range too)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """All A/AAAA addresses of ``host`` via the system resolver, in its preferred order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve host {host!r}: {exc}") from None
    return _unique(str(info[4][0]) for info in infos)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Guard:
    """Turns a validated Target into the addresses the fetcher may connect to."""

    lab: LabNetwork | None = None
    extra_ports: frozenset[int] = field(default_factory=frozenset)
    resolver: Resolver = system_resolver

    @property
    def allowed_ports(self) -> frozenset[int]:
        lab_ports = frozenset(self.lab.allow_ports) if self.lab else frozenset()
        return DEFAULT_PORTS | self.extra_ports | lab_ports

    async def addresses(self, target: Target) -> list[IPAddress]:
        """Every address ``target`` resolves to, all checked; raises BlockedAddress if any fails."""
        if target.port not in self.allowed_ports:
            raise BlockedAddress(f"port {target.port} is not allowed")
        if target.literal is not None:
            candidates = [target.literal]
        else:
            candidates = [_parse_ip(text) for text in await self._resolve(target)]
        if not candidates:
            raise FetchFailed(f"host {target.host!r} has no addresses")
        for address in candidates:
            self._check(address, target.host)
        return candidates

    async def _resolve(self, target: Target) -> list[str]:
        if self.lab is None:
            return await self.resolver(target.host, target.port)
        mapped = self.lab.resolve(target.host)
        if mapped is None:
            # Never fall back to DNS in lab mode: the lab must not reach the real network.
            raise BlockedAddress(f"host {target.host!r} is not in the lab network's host map")
        return [mapped]

    def _check(self, address: IPAddress, host: str) -> None:
        where = str(address) if host == address.compressed else f"{host} -> {address}"
        if self.lab is not None:
            if not self.lab.allows(str(address)):
                raise BlockedAddress(f"{where} is outside the lab network's ranges")
            return
        reason = forbidden_reason(address)
        if reason is not None:
            raise BlockedAddress(f"{where} {reason}")


def _parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        # e.g. a scoped link-local "fe80::1%eth0": never fetchable.
        raise BlockedAddress(f"resolver returned an unusable address {text!r}") from None
