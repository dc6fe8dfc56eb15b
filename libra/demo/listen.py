"""Where the demo's coordinator listens (`libra demo --host/--port`): loopback only.

The demo's traffic never leaves the machine (project rule 3), so a host outside 127.0.0.0/8 and
::1 is refused rather than merely discouraged. A port that is taken is refused before anything
starts: the demo would otherwise run its first steps and only then fail at the coordinator.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
# "localhost" may resolve to either family, or to something else entirely on a strange
# resolver: it is taken to mean the IPv4 loopback address, without asking the resolver.
_ALIASES: Final = {"localhost": DEFAULT_HOST}


class ListenError(ValueError):
    """The address given to the demo cannot be used; the message says why."""


def loopback_host(text: str) -> str:
    """`text` as the literal loopback address to listen on, or ListenError."""
    name = text.strip().lower()
    name = _ALIASES.get(name, name).removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        raise ListenError(
            f"{text!r} is not an IP address: give a loopback address such as 127.0.0.1 or ::1"
        ) from None
    if not address.is_loopback:
        raise ListenError(
            f"{text} is not a loopback address: the demo listens on this machine only "
            "(127.0.0.0/8 or ::1)"
        )
    return str(address)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """ListenError if nothing may listen on `host:port` now (in use, or not allowed)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        # As the coordinator's server does: a port only in TIME_WAIT is free to use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ListenError(f"cannot listen on {where}: {reason}") from None


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port that is free on `host` now (the system's choice)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_url(host: str, port: int) -> str:
    """`http://host:port`, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
