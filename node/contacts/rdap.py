"""Abuse contacts from RDAP (RFC 9083), with bootstrap data cached on disk and answers in the DB.

- Bootstrap (RFC 9224): which RDAP server answers for an address block or ASN. ``whoisit``
  downloads it once (`libra node contacts bootstrap`) and it is kept as a JSON file in whoisit's
  save format, so a mostly offline node only needs the RDAP servers themselves. The file is
  checked with whoisit's own loader; the server for a query is then picked here (longest prefix
  / ASN range) so that an address or ASN the bootstrap does not cover is never sent to a
  fallback server.
- Queries go to ``<base>/ip/<address>`` or ``<base>/autnum/<n>`` through one httpx client. Only
  https base URLs are used, except in lab mode, where only loopback http(s) servers are (tests
  and the demo never leave the machine). Non-public addresses are never looked up outside lab.
- Abuse entities are searched recursively (entities nest inside entities): every entity with
  the role "abuse", nearest first, and the e-mail addresses of its vCard.
- Answers are cached per query (``rdap_contact``) until they expire; failures and answers
  without an abuse address expire sooner. Each query sent is audited (what, which server,
  outcome) — not the cached hits, which send nothing.
"""

from __future__ import annotations

import ipaddress
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.contacts.model import AbuseContact
from node.models import RdapContact
from protocol.models import utcnow

if TYPE_CHECKING:
    from node.config import NodeSettings

MAX_RESPONSE_BYTES = 2_000_000
MAX_DEPTH = 12  # entity nesting followed at most (a malicious answer cannot recurse forever)
MAX_ENTITIES = 500
RDAP_ACCEPT = "application/rdap+json, application/json;q=0.9"
ACTOR = "libra-node"


class RdapError(Exception):
    """RDAP is not usable: bootstrap missing/invalid, or a server URL this node refuses."""


@dataclass(frozen=True)
class RdapAnswer:
    query: str  # "ip:192.0.2.7" / "autnum:64496"
    ok: bool  # the server answered (an answer without abuse entity is ok, with no e-mails)
    emails: tuple[str, ...]
    handle: str | None
    server: str | None
    error: str | None
    fetched_at: datetime
    expires_at: datetime
    cached: bool = False


# ---- parsing an RDAP answer


def _vcard_emails(vcard: Any) -> list[str]:
    """E-mail values of a jCard (RFC 7095): ["vcard", [[name, params, type, value], ...]]."""
    if not (isinstance(vcard, list) and len(vcard) == 2 and isinstance(vcard[1], list)):
        return []
    emails = []
    for prop in vcard[1]:
        if isinstance(prop, list) and len(prop) >= 4 and prop[0] == "email":
            value = prop[3]
            if isinstance(value, str) and "@" in value and len(value) <= 254:
                emails.append(value.strip().removeprefix("mailto:"))
    return emails


def abuse_entities(document: Any) -> list[tuple[str | None, list[str]]]:
    """(handle, e-mails) of every entity with the role "abuse", nearest to the top first."""
    found: list[tuple[str | None, list[str]]] = []
    if not isinstance(document, dict):
        return found
    queue: deque[tuple[dict[str, Any], int]] = deque([(document, 0)])
    seen = 0
    while queue and seen < MAX_ENTITIES:
        node, depth = queue.popleft()
        seen += 1
        roles = node.get("roles")
        if isinstance(roles, list) and "abuse" in roles:
            handle = node.get("handle")
            found.append(
                (handle if isinstance(handle, str) else None, _vcard_emails(node.get("vcardArray")))
            )
        children = node.get("entities")
        if depth < MAX_DEPTH and isinstance(children, list):
            queue.extend((child, depth + 1) for child in children if isinstance(child, dict))
    return found


def abuse_contact_of(document: Any) -> tuple[tuple[str, ...], str | None]:
    """All abuse e-mail addresses (deduplicated, nearest entity first) and the first handle."""
    emails: list[str] = []
    handle: str | None = None
    for entity_handle, entity_emails in abuse_entities(document):
        if handle is None and entity_emails:
            handle = entity_handle
        for email in entity_emails:
            if email.lower() not in (e.lower() for e in emails):
                emails.append(email)
    if handle is None and isinstance(document, dict) and isinstance(document.get("handle"), str):
        handle = document["handle"]
    return tuple(emails), handle


# ---- bootstrap


def _check_with_whoisit(text: str, allow_insecure: bool) -> None:
    from whoisit.bootstrap import _BootstrapWrapper  # type: ignore[import-untyped]
    from whoisit.errors import BootstrapError  # type: ignore[import-untyped]

    try:
        _BootstrapWrapper().load_bootstrap_data(text, allow_insecure=allow_insecure)
    except (BootstrapError, ValueError, TypeError, AttributeError) as exc:
        raise RdapError(f"invalid RDAP bootstrap data: {exc}") from exc


class Bootstrap:
    """Server lookup over whoisit's saved bootstrap JSON (never a fallback server)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.timestamp = int(data.get("timestamp", 0))
        self._asn: list[tuple[int, int, list[str]]] = []
        self._nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, list[str]]] = []
        for selector, urls in _services(data, "asn"):
            for item in selector:
                low, _, high = str(item).partition("-")
                self._asn.append((int(low), int(high or low), urls))
        for family in ("ipv4", "ipv6"):
            for selector, urls in _services(data, family):
                for prefix in selector:
                    self._nets.append((ipaddress.ip_network(str(prefix), strict=False), urls))
        self._nets.sort(key=lambda item: -item[0].prefixlen)

    @classmethod
    def load(cls, path: Path, *, lab: bool) -> Bootstrap:
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError as exc:
            raise RdapError(
                f"no RDAP bootstrap data at {path}: run `libra node contacts bootstrap` "
                "(online once) or copy the file from a node that has it"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise RdapError(f"cannot read the RDAP bootstrap data {path}: {exc}") from exc
        _check_with_whoisit(text, allow_insecure=lab)
        try:
            return cls(json.loads(text))
        except (ValueError, TypeError, AttributeError) as exc:
            raise RdapError(f"invalid RDAP bootstrap data in {path}: {exc}") from exc

    def servers_for_asn(self, asn: int) -> list[str]:
        return next((urls for low, high, urls in self._asn if low <= asn <= high), [])

    def servers_for_ip(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
        return next(
            (urls for net, urls in self._nets if net.version == address.version and address in net),
            [],
        )


def _services(data: dict[str, Any], key: str) -> list[tuple[list[Any], list[str]]]:
    section = data.get(key)
    services = section.get("services", []) if isinstance(section, dict) else []
    return [(list(s[0]), [str(u) for u in s[1]]) for s in services]


def save_bootstrap(path: Path, text: str, *, lab: bool) -> None:
    """Check and store bootstrap data (whoisit JSON) atomically."""
    _check_with_whoisit(text, allow_insecure=lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def download_bootstrap() -> str:  # pragma: no cover - reaches IANA; never run by the tests
    """IANA's bootstrap data through whoisit (the one step that needs to be online)."""
    import whoisit  # type: ignore[import-untyped]

    whoisit.clear_bootstrapping()
    whoisit.bootstrap()
    return str(whoisit.save_bootstrap_data())


# ---- URL policy


def _loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_url(url: str, *, lab: bool) -> None:
    """https only; in lab mode only loopback http(s) (tests and demo stay on the machine)."""
    parts = urlsplit(url)
    if lab:
        if parts.scheme not in ("http", "https") or not _loopback_host(parts.hostname or ""):
            raise RdapError(f"lab mode: RDAP server {url} is not a loopback http(s) URL")
    elif parts.scheme != "https" or not parts.hostname:
        raise RdapError(f"RDAP server {url} refused: only https RDAP servers are used")


# ---- the resolver


class RdapResolver:
    def __init__(
        self,
        engine: Engine,
        bootstrap_path: Path,
        *,
        lab: bool,
        cache_ttl: timedelta = timedelta(days=7),
        negative_ttl: timedelta = timedelta(hours=6),
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.bootstrap_path = bootstrap_path
        self.lab = lab
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.timeout_s = timeout_s
        self.transport = transport
        self.clock = clock
        self._bootstrap: Bootstrap | None = None
        self.queries_sent = 0  # for the operator's summary and the tests

    @classmethod
    def from_settings(cls, settings: NodeSettings, engine: Engine) -> RdapResolver:
        c = settings.contacts
        return cls(
            engine,
            settings.rdap_bootstrap_path,
            lab=settings.lab is not None,
            cache_ttl=timedelta(days=c.cache_days),
            negative_ttl=timedelta(hours=c.negative_cache_hours),
            timeout_s=c.timeout_s,
        )

    def bootstrap(self) -> Bootstrap:
        if self._bootstrap is None:
            self._bootstrap = Bootstrap.load(self.bootstrap_path, lab=self.lab)
        return self._bootstrap

    # -- public

    def resolve(self, *, ip: str | None, asn: int | None) -> AbuseContact:
        """The server address's network first, then its ASN; never raises."""
        errors: list[str] = []
        queries = []
        if ip:
            queries.append(("ip", ip))
        if asn:
            queries.append(("autnum", str(asn)))
        if not queries:
            return AbuseContact((), None, "none", None, "no address and no ASN to look up")
        for kind, value in queries:
            answer = self.lookup(kind, value)
            if answer.emails:
                return AbuseContact(answer.emails, None, "rdap", answer.handle)
            errors.append(f"{answer.query}: {answer.error or 'no abuse contact in the answer'}")
        return AbuseContact((), None, "none", None, "; ".join(errors))

    def lookup(self, kind: str, value: str, *, refresh: bool = False) -> RdapAnswer:
        """One query, from the cache unless expired (or ``refresh``)."""
        try:
            query = self._query_key(kind, value)
        except RdapError as exc:
            now = self.clock()
            return RdapAnswer(f"{kind}:{value}", False, (), None, None, str(exc), now, now)
        now = self.clock()
        if not refresh:
            cached = self.cached(query)
            if cached is not None and cached.expires_at > now:
                return cached
        answer = self._fetch(query, now)
        self._store(answer)
        return answer

    def cached(self, query: str) -> RdapAnswer | None:
        with Session(self.engine) as session:
            row = session.exec(select(RdapContact).where(col(RdapContact.query) == query)).first()
        return _answer_of(row) if row is not None else None

    # -- internals

    def _query_key(self, kind: str, value: str) -> str:
        if kind == "ip":
            try:
                address = ipaddress.ip_address(value.strip())
            except ValueError as exc:
                raise RdapError(f"{value!r} is not an IP address") from exc
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            return f"ip:{address}"
        if kind == "autnum":
            text = value.strip().upper().removeprefix("AS")
            if not text.isdigit() or not 0 < int(text) < 2**32:
                raise RdapError(f"{value!r} is not an AS number")
            return f"autnum:{int(text)}"
        raise RdapError(f"unknown RDAP query kind {kind!r}")

    def _server(self, query: str) -> str:
        kind, _, value = query.partition(":")
        bootstrap = self.bootstrap()
        if kind == "ip":
            address = ipaddress.ip_address(value)
            if not address.is_global and not self.lab:
                raise RdapError(f"{value} is not a public address: RDAP has nothing on it")
            servers = bootstrap.servers_for_ip(address)
        else:
            servers = bootstrap.servers_for_asn(int(value))
        if not servers:
            raise RdapError(f"the RDAP bootstrap data names no server for {query}")
        refused: list[str] = []
        for server in servers:
            try:
                check_server_url(server, lab=self.lab)
            except RdapError as exc:
                refused.append(str(exc))
                continue
            return server
        raise RdapError("; ".join(refused))

    def _check_request(self, request: httpx.Request) -> None:
        check_server_url(str(request.url), lab=self.lab)  # redirects too

    def _fetch(self, query: str, now: datetime) -> RdapAnswer:
        kind, _, value = query.partition(":")
        server: str | None = None
        try:
            server = self._server(query)
            url = f"{server.rstrip('/')}/{kind}/{value}"
            self.queries_sent += 1
            document = self._get_json(url)
        except RdapError as exc:
            return self._failure(query, server, str(exc), now)
        if document is None:  # 404: the registry has no object for it
            emails: tuple[str, ...] = ()
            handle = None
        else:
            emails, handle = abuse_contact_of(document)
        ttl = self.cache_ttl if emails else self.negative_ttl
        answer = RdapAnswer(query, True, emails, handle, server, None, now, now + ttl)
        audit.log(
            self.engine,
            "contacts.rdap_query",
            actor=ACTOR,
            subject=query,
            details={"server": server, "outcome": "found" if emails else "no-abuse-contact"},
        )
        return answer

    def _failure(self, query: str, server: str | None, error: str, now: datetime) -> RdapAnswer:
        audit.log(
            self.engine,
            "contacts.rdap_query",
            actor=ACTOR,
            subject=query,
            details={"server": server, "outcome": "error", "error": error[:500]},
        )
        return RdapAnswer(query, False, (), None, server, error, now, now + self.negative_ttl)

    def _get_json(self, url: str) -> Any:
        hooks: dict[str, list[Callable[..., Any]]] = {"request": [self._check_request]}
        try:
            with (
                httpx.Client(
                    timeout=self.timeout_s,
                    follow_redirects=True,
                    max_redirects=3,
                    transport=self.transport,
                    trust_env=False,  # no proxy from the environment: lab traffic stays local
                    headers={"Accept": RDAP_ACCEPT},
                    event_hooks=hooks,
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise RdapError(f"{url}: HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise RdapError(f"{url}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise RdapError(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            document = json.loads(bytes(body))
        except ValueError as exc:
            raise RdapError(f"{url}: malformed RDAP JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise RdapError(f"{url}: malformed RDAP answer: not a JSON object")
        return document

    def _store(self, answer: RdapAnswer) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.exec(
                select(RdapContact).where(col(RdapContact.query) == answer.query)
            ).first()
            row = row or RdapContact(
                query=answer.query,
                fetched_at=answer.fetched_at,
                expires_at=answer.expires_at,
                ok=False,
            )
            row.fetched_at = answer.fetched_at
            row.expires_at = answer.expires_at
            row.ok = answer.ok
            row.emails = json.dumps(list(answer.emails))
            row.handle = answer.handle
            row.server = answer.server
            row.error = answer.error
            session.add(row)


def _answer_of(row: RdapContact) -> RdapAnswer:
    return RdapAnswer(
        query=row.query,
        ok=row.ok,
        emails=tuple(json.loads(row.emails)),
        handle=row.handle,
        server=row.server,
        error=row.error,
        fetched_at=row.fetched_at,
        expires_at=row.expires_at,
        cached=True,
    )


def cached_answers(engine: Engine) -> list[RdapAnswer]:
    """Every cached RDAP answer, newest first (for `libra node contacts show`)."""
    with Session(engine) as session:
        rows = session.exec(select(RdapContact).order_by(col(RdapContact.fetched_at).desc())).all()
    return [_answer_of(r) for r in rows]
