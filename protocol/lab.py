"""The lab network: a synthetic web on loopback, named explicitly.

Production components refuse loopback addresses. In lab mode a static host -> IP map replaces
DNS and only the listed loopback ranges are allowed. The same file configures the function (what
it may fetch) and the node's crawler (how it resolves synthetic host names).
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
LOOPBACK_V6 = ipaddress.IPv6Network("::1/128")


class LabNetwork(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Synthetic host name -> loopback address.
    hosts: dict[str, str] = Field(default_factory=dict)
    # Ranges the lab may reach; every one must lie inside loopback.
    allow_ranges: list[str] = Field(default_factory=lambda: ["127.0.0.0/8"])
    # Extra ports allowed besides 80/443 (the synthetic web listens on a high port).
    allow_ports: list[int] = Field(default_factory=list)

    @field_validator("allow_ranges")
    @classmethod
    def _loopback_only(cls, ranges: list[str]) -> list[str]:
        for text in ranges:
            net = ipaddress.ip_network(text, strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                inside = net.subnet_of(LOOPBACK_V4)
            else:
                inside = net.subnet_of(LOOPBACK_V6)
            if not inside:
                raise ValueError(f"lab range {text} is outside loopback; the lab never leaves it")
        return ranges

    @field_validator("hosts")
    @classmethod
    def _hosts_loopback(cls, hosts: dict[str, str]) -> dict[str, str]:
        for name, ip in hosts.items():
            if not ipaddress.ip_address(ip).is_loopback:
                raise ValueError(f"lab host {name} maps to {ip}, which is not loopback")
        return {name.lower().rstrip("."): ip for name, ip in hosts.items()}

    def allows(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in ipaddress.ip_network(r, strict=False) for r in self.allow_ranges)

    def resolve(self, host: str) -> str | None:
        return self.hosts.get(host.lower().rstrip("."))


def load_lab(path: Path) -> LabNetwork:
    with path.open("rb") as handle:
        return LabNetwork.model_validate(tomllib.load(handle))
