"""Server IP -> (country, ASN, hoster) from MaxMind-format databases.

Two databases, read with ``maxminddb``:

- country: GeoLite2-Country schema, ``{"country": {"iso_code": "DE"}}``;
- ASN: GeoLite2-ASN schema, ``{"autonomous_system_number": 64500,
  "autonomous_system_organization": "Hoster A"}``. The hoster is the AS organisation.

Anything not attributable (no database configured, address not in it, no address at all)
becomes UNKNOWN_COUNTRY / UNKNOWN_ASN / UNKNOWN_HOSTER: such sightings are counted as unknown,
never dropped. A database that is configured but cannot be opened is an error, so that a typo
does not silently turn every sighting into "unknown".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import maxminddb

from protocol.models import UNKNOWN_ASN, UNKNOWN_COUNTRY, UNKNOWN_HOSTER

MAX_HOSTER_LENGTH = 200  # ReportCell.hoster limit
_ISO2 = re.compile(r"^[A-Z]{2}$")


class GeoDatabaseError(Exception):
    """A configured GeoIP database is missing or unreadable."""


@dataclass(frozen=True)
class Attribution:
    country: str = UNKNOWN_COUNTRY
    asn: int = UNKNOWN_ASN
    hoster: str = UNKNOWN_HOSTER


UNKNOWN = Attribution()


def _open(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise GeoDatabaseError(f"cannot open the {what} database {path}: {exc}") from exc


def _lookup(reader: Any, ip: str) -> dict[str, Any] | None:
    if reader is None:
        return None
    try:
        record = reader.get(ip)
    except ValueError:  # e.g. an IPv6 address in an IPv4-only database
        return None
    return record if isinstance(record, dict) else None


def _country(record: dict[str, Any] | None) -> str:
    if record is None:
        return UNKNOWN_COUNTRY
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    if isinstance(code, str) and _ISO2.match(code.upper()):
        return code.upper()
    return UNKNOWN_COUNTRY


def _asn(record: dict[str, Any] | None) -> tuple[int, str]:
    if record is None:
        return UNKNOWN_ASN, UNKNOWN_HOSTER
    number = record.get("autonomous_system_number")
    asn = number if isinstance(number, int) and 0 <= number < 2**32 else UNKNOWN_ASN
    org = record.get("autonomous_system_organization")
    hoster = org.strip()[:MAX_HOSTER_LENGTH] if isinstance(org, str) and org.strip() else None
    return asn, hoster or UNKNOWN_HOSTER


class Attributor:
    """Opened once per cycle; ``lookup`` is cheap (memory-mapped databases)."""

    def __init__(self, country_db: Path | None = None, asn_db: Path | None = None) -> None:
        self._country = _open(country_db, "country")
        try:
            self._asn = _open(asn_db, "ASN")
        except GeoDatabaseError:
            self.close()
            raise

    def lookup(self, ip: str | None) -> Attribution:
        if not ip:
            return UNKNOWN
        try:
            address = str(ipaddress.ip_address(ip))
        except ValueError:
            return UNKNOWN
        asn, hoster = _asn(_lookup(self._asn, address))
        return Attribution(_country(_lookup(self._country, address)), asn, hoster)

    def close(self) -> None:
        for reader in (getattr(self, "_country", None), getattr(self, "_asn", None)):
            if reader is not None:
                reader.close()

    def __enter__(self) -> Attributor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
