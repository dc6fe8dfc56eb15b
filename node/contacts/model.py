"""What an abuse-contact lookup answers with: shared by the resolver, RDAP and the notices
(a module of its own so that RDAP and the resolver need not import each other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

ContactSource = Literal["operator-table", "rdap", "none"]


@dataclass(frozen=True)
class HosterIdentity:
    """Who hosts a sighting (from attribution + operator table): the report cells' strings."""

    country: str
    asn: int
    hoster: str


@dataclass(frozen=True)
class AbuseContact:
    emails: tuple[str, ...]  # abuse mailboxes, may be empty
    webhook: str | None  # only from the operator table
    source: str  # "operator-table" | "rdap" | "none"
    reference: str | None  # operator id or RDAP entity handle, for the audit trail
    error: str | None = None  # why nothing was found (RDAP unreachable, malformed, ...)

    @property
    def found(self) -> bool:
        return bool(self.emails or self.webhook)


NO_CONTACT = AbuseContact(emails=(), webhook=None, source="none", reference=None)


class ContactResolver(Protocol):
    def resolve(
        self, identity: HosterIdentity, *, ip: str | None, domain: str | None
    ) -> AbuseContact: ...
