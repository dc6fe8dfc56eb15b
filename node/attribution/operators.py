"""The operator table: the node operator's own knowledge of hosters.

A TOML file of ``[[hoster]]`` entries maps ASNs, IP ranges (CIDR) and domains to a hoster
identity (id, display name, optional country override, abuse e-mail addresses, webhook URL). It
overrides what the GeoIP databases say (the AS organisation name, and the country when given)
and is the first source of abuse contacts. Most specific match wins: domain (longest suffix) >
network (longest prefix) > ASN.

Every problem is reported with the entry it concerns (``hoster #3 (id 'x'): networks[1] ...``)
and TOML syntax errors with their line, so an operator can fix the file without guessing. The
content digest (SHA-256 of the file bytes) names the table's version in reports.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MatchKind = Literal["domain", "network", "asn"]

OPERATOR_TABLE_SOURCE = "operator-table"  # AttributionSource.name of the table
MAX_NAME_LENGTH = 200  # ReportCell.hoster limit
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ISO2 = re.compile(r"^[A-Z]{2}$")
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEYS = {"id", "name", "country", "abuse_emails", "webhook", "asns", "networks", "domains"}


class OperatorTableError(ValueError):
    """The operator table is missing, not TOML, or has an invalid entry."""


@dataclass(frozen=True)
class Operator:
    id: str
    name: str
    country: str | None = None
    abuse_emails: tuple[str, ...] = ()
    webhook: str | None = None
    asns: tuple[int, ...] = ()
    networks: tuple[IpNetwork, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperatorMatch:
    operator: Operator
    by: MatchKind
    key: str  # the domain, network or "AS<n>" that matched


def normalise_domain(value: str) -> str | None:
    """Lower-case, no trailing dot, IDNA-encoded; None when it is not a host name."""
    name = value.strip().rstrip(".").lower()
    if not name:
        return None
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return name


class OperatorTable:
    def __init__(self, operators: list[Operator], digest: str) -> None:
        self.operators = tuple(operators)
        self.digest = digest
        self._by_id = {op.id: op for op in operators}
        self._domains = {d: op for op in operators for d in op.domains}
        # Longest prefix first: the first network containing an address is the most specific.
        self._networks = sorted(
            ((net, op) for op in operators for net in op.networks),
            key=lambda item: -item[0].prefixlen,
        )
        self._asns = {asn: op for op in operators for asn in op.asns}

    @property
    def version(self) -> str:
        return f"sha256:{self.digest}"

    def get(self, operator_id: str) -> Operator | None:
        return self._by_id.get(operator_id)

    def match(
        self, *, domain: str | None = None, ip: str | None = None, asn: int | None = None
    ) -> OperatorMatch | None:
        """The most specific entry for a host name, server address or ASN, if any."""
        if domain and (name := normalise_domain(domain)) is not None:
            labels = name.split(".")
            for i in range(len(labels)):  # longest suffix first
                suffix = ".".join(labels[i:])
                if suffix in self._domains:
                    return OperatorMatch(self._domains[suffix], "domain", suffix)
        if ip:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            if address is not None:
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped
                for net, op in self._networks:
                    if address.version == net.version and address in net:
                        return OperatorMatch(op, "network", str(net))
        if asn and asn in self._asns:
            return OperatorMatch(self._asns[asn], "asn", f"AS{asn}")
        return None


EMPTY_TABLE = OperatorTable([], hashlib.sha256(b"").hexdigest())


def _fail(where: str, message: str) -> OperatorTableError:
    return OperatorTableError(f"{where}: {message}")


def _string_list(where: str, entry: dict[str, Any], key: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"{key} must be a list of strings")
    return value


def _parse_entry(where: str, entry: Any) -> Operator:
    if not isinstance(entry, dict):
        raise _fail(where, "must be a table")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)} (allowed: {sorted(_KEYS)})")
    op_id = entry.get("id")
    if not isinstance(op_id, str) or not _ID.match(op_id):
        raise _fail(where, "id must be lower-case letters, digits, '.', '_' or '-' (1-63)")
    where = f"{where} (id {op_id!r})"
    name = entry.get("name")
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name.strip()) > MAX_NAME_LENGTH
        or _CONTROL.search(name)
    ):
        raise _fail(where, f"name must be 1-{MAX_NAME_LENGTH} printable characters")
    country = entry.get("country")
    if country is not None and (not isinstance(country, str) or not _ISO2.match(country)):
        raise _fail(where, f"country {country!r} is not an upper-case ISO 3166-1 alpha-2 code")
    emails = _string_list(where, entry, "abuse_emails")
    for i, email in enumerate(emails):
        if not _EMAIL.match(email):
            raise _fail(where, f"abuse_emails[{i}] {email!r} is not an e-mail address")
    webhook = entry.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not re.match(r"^https?://[^\s/]+", webhook)
    ):
        raise _fail(where, f"webhook {webhook!r} is not an http(s) URL")
    asns = entry.get("asns", [])
    if not isinstance(asns, list):
        raise _fail(where, "asns must be a list of AS numbers")
    for i, asn in enumerate(asns):
        if isinstance(asn, bool) or not isinstance(asn, int) or not 0 < asn < 2**32:
            raise _fail(where, f"asns[{i}] {asn!r} is not an AS number (1 to 4294967295)")
    networks: list[IpNetwork] = []
    for i, text in enumerate(_string_list(where, entry, "networks")):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as exc:
            raise _fail(where, f"networks[{i}] {text!r} is not a CIDR network: {exc}") from exc
    domains: list[str] = []
    for i, text in enumerate(_string_list(where, entry, "domains")):
        domain = normalise_domain(text)
        if domain is None:
            raise _fail(where, f"domains[{i}] {text!r} is not a domain name")
        domains.append(domain)
    if not (asns or networks or domains):
        raise _fail(where, "matches nothing: give at least one of asns, networks, domains")
    return Operator(
        id=op_id,
        name=name.strip(),
        country=country,
        abuse_emails=tuple(emails),
        webhook=webhook,
        asns=tuple(asns),
        networks=tuple(networks),
        domains=tuple(domains),
    )


def parse_operator_table(data: bytes, source: str = "operator table") -> OperatorTable:
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise OperatorTableError(f"{source}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:  # the message names line and column
        raise OperatorTableError(f"{source}: not valid TOML: {exc}") from exc
    extra = sorted(set(document) - {"hoster"})
    if extra:
        raise OperatorTableError(f"{source}: unknown top-level key(s) {', '.join(extra)}")
    entries = document.get("hoster", [])
    if not isinstance(entries, list):
        raise OperatorTableError(f"{source}: 'hoster' must be an array of tables ([[hoster]])")
    operators: list[Operator] = []
    owners: dict[str, str] = {}  # "domain x" / "network y" / "AS z" / "id" -> first owner
    for number, raw in enumerate(entries, start=1):
        op = _parse_entry(f"{source}: hoster #{number}", raw)
        keys = [
            f"id {op.id}",
            *(f"domain {d}" for d in op.domains),
            *(f"network {n}" for n in op.networks),
            *(f"AS{a}" for a in op.asns),
        ]
        for key in keys:
            if key in owners:
                raise OperatorTableError(
                    f"{source}: hoster #{number} (id {op.id!r}): {key} is already given by "
                    f"hoster {owners[key]!r}: each may appear once"
                )
            owners[key] = op.id
        operators.append(op)
    return OperatorTable(operators, hashlib.sha256(data).hexdigest())


def load_operator_table(path: Path | None) -> OperatorTable | None:
    """The table at ``path``; None when no table is configured."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OperatorTableError(f"cannot read the operator table {path}: {exc}") from exc
    return parse_operator_table(data, str(path))
