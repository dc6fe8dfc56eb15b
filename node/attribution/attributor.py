"""Server IP -> (country, ASN, hoster) from MaxMind-format databases.

Two databases, read with ``maxminddb``:

- country: GeoLite2-Country schema, ``{"country": {"iso_code": "DE"}}``;
- ASN: GeoLite2-ASN schema, ``{"autonomous_system_number": 64500,
  "autonomous_system_organization": "Hoster A"}``. The hoster is the AS organisation.

Anything not attributable (no database configured, address not in it, no address at all)
becomes UNKNOWN_COUNTRY / UNKNOWN_ASN / UNKNOWN_HOSTER: such sightings are counted as unknown,
never dropped. A database that is configured but cannot be opened is an error, so that a typo
does not silently turn every sighting into "unknown".

An operator table (node/attribution/operators.py) overrides both: the most specific entry for
the image's host name, server address or ASN names the hoster (and the country, when it
gives one).
``sources()`` names the database versions an attribution rests on (MaxMind metadata
database_type + build_epoch, the operator table's digest); every sighting records them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import maxminddb

from node.attribution.operators import (
    OPERATOR_TABLE_SOURCE,
    OperatorTable,
    OperatorTableError,
    load_operator_table,
)
from protocol.models import UNKNOWN_ASN, UNKNOWN_COUNTRY, UNKNOWN_HOSTER, AttributionSource

MAX_HOSTER_LENGTH = 200  # ReportCell.hoster limit
_ISO2 = re.compile(r"^[A-Z]{2}$")


class GeoDatabaseError(Exception):
    """A configured GeoIP database is missing or unreadable."""


@dataclass(frozen=True)
class Attribution:
    country: str = UNKNOWN_COUNTRY
    asn: int = UNKNOWN_ASN
    hoster: str = UNKNOWN_HOSTER
    operator_id: str | None = None  # the operator-table entry that placed it, if any


UNKNOWN = Attribution()


def host_of(url: str) -> str | None:
    """The host name of a URL (for the operator table's domain match), None when it has none."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _open(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise GeoDatabaseError(f"cannot open the {what} database {path}: {exc}") from exc


def open_operator_table(path: Path | None) -> OperatorTable | None:
    """The configured operator table; a broken one stops the crawl like a broken database."""
    try:
        return load_operator_table(path)
    except OperatorTableError as exc:
        raise GeoDatabaseError(str(exc)) from exc


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


def _reader_source(reader: Any) -> tuple[str, str]:
    meta = reader.metadata()
    name = str(getattr(meta, "database_type", "") or "mmdb").strip()[:100] or "mmdb"
    epoch = getattr(meta, "build_epoch", None)
    if isinstance(epoch, int) and epoch >= 0:
        version = datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
    else:
        version = "unknown"
    return re.sub(r"[\x00-\x1f\x7f]", "?", name), version


class Attributor:
    """Opened once per cycle; ``lookup`` is cheap (memory-mapped databases)."""

    def __init__(
        self,
        country_db: Path | None = None,
        asn_db: Path | None = None,
        operators: OperatorTable | None = None,
    ) -> None:
        self._operators = operators
        self._country = _open(country_db, "country")
        try:
            self._asn = _open(asn_db, "ASN")
        except GeoDatabaseError:
            self.close()
            raise

    def lookup(self, ip: str | None, domain: str | None = None) -> Attribution:
        """Where ``ip`` is (GeoIP), overridden by the operator table for ``domain``/ip/ASN."""
        found = UNKNOWN
        address: str | None = None
        if ip:
            try:
                address = str(ipaddress.ip_address(ip))
            except ValueError:
                address = None
        if address is not None:
            asn, hoster = _asn(_lookup(self._asn, address))
            found = Attribution(_country(_lookup(self._country, address)), asn, hoster)
        if self._operators is None:
            return found
        match = self._operators.match(domain=domain, ip=address, asn=found.asn or None)
        if match is None:
            return found
        op = match.operator
        return Attribution(op.country or found.country, found.asn, op.name, op.id)

    def sources(self) -> list[AttributionSource]:
        """The database versions behind this attributor's answers (sorted, deduplicated)."""
        found: set[tuple[str, str]] = set()
        for reader in (self._country, self._asn):
            if reader is not None:
                found.add(_reader_source(reader))
        if self._operators is not None:
            found.add((OPERATOR_TABLE_SOURCE, self._operators.version))
        return [AttributionSource(name=n, version=v) for n, v in sorted(found)]

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
