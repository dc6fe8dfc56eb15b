"""Abuse contacts of a hoster: the operator table first, then RDAP (cached), else none.

Used by the notices (node/notices) to find where a notice goes. The operator table is the operator's
own, checked knowledge, so it wins; RDAP answers (node/contacts/rdap.py) are cached in the node
database with an expiry. A failed lookup never raises: it gives ``source="none"`` with the error, so
a notice can be held for an analyst instead of being dropped silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from node.attribution.operators import OperatorTable, load_operator_table
from node.contacts.model import AbuseContact, ContactResolver, HosterIdentity

if TYPE_CHECKING:
    from node.config import NodeSettings
    from node.contacts.rdap import RdapResolver


class Resolver:
    """Operator table, then RDAP (when configured)."""

    def __init__(self, operators: OperatorTable | None, rdap: RdapResolver | None = None) -> None:
        self.operators = operators
        self.rdap = rdap

    def from_table(
        self, identity: HosterIdentity, *, ip: str | None, domain: str | None
    ) -> AbuseContact | None:
        if self.operators is None:
            return None
        match = self.operators.match(domain=domain, ip=ip, asn=identity.asn or None)
        if match is None or not (match.operator.abuse_emails or match.operator.webhook):
            return None
        op = match.operator
        return AbuseContact(op.abuse_emails, op.webhook, "operator-table", op.id)

    def resolve(
        self, identity: HosterIdentity, *, ip: str | None, domain: str | None
    ) -> AbuseContact:
        found = self.from_table(identity, ip=ip, domain=domain)
        if found is not None:
            return found
        if self.rdap is None:
            return AbuseContact((), None, "none", None, "no operator-table entry; RDAP is off")
        return self.rdap.resolve(ip=ip, asn=identity.asn or None)


def contact_resolver(settings: NodeSettings, engine: Engine) -> ContactResolver:
    """The resolver the settings describe (operator table, RDAP with its cached bootstrap)."""
    operators = load_operator_table(settings.attribution.operators_file)
    rdap: RdapResolver | None = None
    if settings.contacts.rdap:
        from node.contacts.rdap import (
            RdapResolver,  # only when used: keeps whoisit off the import path
        )

        rdap = RdapResolver.from_settings(settings, engine)
    return Resolver(operators, rdap)
