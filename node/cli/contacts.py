"""`libra node contacts ...` (abuse contacts: operator table, RDAP cache) and
`libra node retention ...` (erase what has passed its retention time). Mounted by node/cli/main.py.

Every consultation is written to the audit log with the user (``--actor``, default the login
name) and ``--reason``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.attribution.operators import OperatorTable
    from node.config import NodeSettings
    from node.contacts.rdap import RdapResolver

from node.cli.common import ConfigOption, console, err, fail, settings_or_exit

# The record types of node.retention.RULES (named here so that `--help` need not import the
# database models; tests/node/test_cli_help_names.py keeps the two equal).
RETENTION_RULES = (
    "sightings",
    "matched_images",
    "unmatched_images",
    "cycle_images",
    "analysis_failures",
    "rdap_cache",
    "notices",
    "held_sightings",
    "candidates_decided",
    "candidates_pending",
)

contacts_app = typer.Typer(
    help="Abuse contacts of hosters: operator table, then RDAP (cached).", no_args_is_help=True
)
retention_app = typer.Typer(help="Erase records past their retention time.", no_args_is_help=True)

ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded in the audit log with the user).")
]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who (recorded in the audit log; default: the login name)."),
]


def _open(config: Path | None) -> tuple[NodeSettings, Engine, OperatorTable | None]:
    from node.attribution.attributor import GeoDatabaseError, open_operator_table
    from node.keys.list_encryption import ListKeyError
    from node.service import open_engine

    settings = settings_or_exit(config)
    try:
        engine = open_engine(settings)
        operators = open_operator_table(settings.attribution.operators_file)
    except (ListKeyError, GeoDatabaseError) as exc:
        fail(str(exc), 2)
    return settings, engine, operators


def _rdap(settings: NodeSettings, engine: Engine) -> RdapResolver:
    from node.contacts.rdap import RdapResolver

    return RdapResolver.from_settings(settings, engine)


@contacts_app.command("resolve")
def contacts_resolve(
    ip: Annotated[str | None, typer.Option("--ip", help="Server address.")] = None,
    asn: Annotated[int | None, typer.Option("--asn", help="AS number.", min=1)] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Host name of the URL.")] = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Who hosts it and where a notice would go (exit 1 when no contact is known)."""
    from node import audit
    from node.attribution.attributor import Attributor, GeoDatabaseError
    from node.contacts.model import HosterIdentity
    from node.contacts.resolver import Resolver

    if not (ip or asn or domain):
        fail("give at least one of --ip, --asn, --domain", 2)
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            fail(f"--ip {ip!r} is not an IP address", 2)
    settings, engine, operators = _open(config)
    try:
        geoip = Attributor(settings.geoip.country_db, settings.geoip.asn_db, operators)
    except GeoDatabaseError as exc:
        fail(str(exc), 2)
    with geoip:
        where = geoip.lookup(ip, domain)
    identity = HosterIdentity(where.country, asn or where.asn, where.hoster)
    rdap = _rdap(settings, engine) if settings.contacts.rdap else None
    contact = Resolver(operators, rdap).resolve(identity, ip=ip, domain=domain)
    audit.log(
        engine,
        "contacts.resolve",
        subject=" ".join(
            f"{k}:{v}" for k, v in (("ip", ip), ("asn", asn), ("domain", domain)) if v
        ),
        reason=reason,
        actor=actor,
        details={"source": contact.source, "reference": contact.reference},
    )
    console.print(
        f"hoster: {escape(identity.hoster)} (AS{identity.asn}, {identity.country})"
        + (f", operator-table entry {escape(where.operator_id)}" if where.operator_id else "")
    )
    console.print(
        f"source: {contact.source}"
        + (f" ({escape(contact.reference)})" if contact.reference else "")
    )
    for email in contact.emails:
        console.print(f"e-mail: {escape(email)}")
    if contact.webhook:
        console.print(f"webhook: {escape(contact.webhook)}")
    if not contact.found:
        err.print(f"no abuse contact: {escape(contact.error or 'none found')}")
        raise typer.Exit(1)


@contacts_app.command("show")
def contacts_show(
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """The operator table's hosters and the cached RDAP answers."""
    from node import audit
    from node.contacts.rdap import cached_answers

    _, engine, operators = _open(config)
    audit.log(engine, "contacts.show", reason=reason, actor=actor)
    if operators is None:
        console.print("operator table: none configured")
    else:
        table = Table(title=f"operator table ({operators.version[:19]}...)")
        for column in ("id", "name", "country", "matches", "abuse e-mails", "webhook"):
            table.add_column(column)
        for op in operators.operators:
            matches = [*op.domains, *(str(n) for n in op.networks), *(f"AS{a}" for a in op.asns)]
            table.add_row(
                op.id,
                escape(op.name),
                op.country or "",
                escape(", ".join(matches)),
                escape(", ".join(op.abuse_emails)),
                escape(op.webhook or ""),
            )
        console.print(table)
    answers = cached_answers(engine)
    if not answers:
        console.print("RDAP cache: empty")
        return
    table = Table(title="RDAP cache")
    for column in ("query", "answer", "abuse e-mails", "handle", "fetched", "expires"):
        table.add_column(column)
    for a in answers:
        table.add_row(
            a.query,
            "ok" if a.ok else f"error: {escape(a.error or '')}",
            escape(", ".join(a.emails)),
            escape(a.handle or ""),
            f"{a.fetched_at:%Y-%m-%dT%H:%MZ}",
            f"{a.expires_at:%Y-%m-%dT%H:%MZ}",
        )
    console.print(table)


@contacts_app.command("refresh")
def contacts_refresh(
    queries: Annotated[
        list[str] | None,
        typer.Argument(
            help="Cached queries to ask again (ip:ADDRESS, autnum:N); default: expired."
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Ask every cached query again.")] = False,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Ask RDAP again for cached answers (the expired ones unless told otherwise)."""
    from node import audit
    from node.contacts.rdap import cached_answers

    settings, engine, _ = _open(config)
    resolver = _rdap(settings, engine)
    now = resolver.clock()
    if queries:
        todo = list(queries)
    else:
        todo = [a.query for a in cached_answers(engine) if every or a.expires_at <= now]
    bad = [q for q in todo if q.partition(":")[0] not in ("ip", "autnum") or ":" not in q]
    if bad:
        fail(f"not a query (ip:ADDRESS or autnum:N): {', '.join(bad)}", 2)
    audit.log(
        engine, "contacts.refresh", reason=reason, actor=actor, details={"queries": len(todo)}
    )
    failed = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as progress:
        task = progress.add_task("RDAP", total=len(todo))
        for query in todo:
            kind, _, value = query.partition(":")
            answer = resolver.lookup(kind, value, refresh=True)
            if not answer.ok:
                failed += 1
                err.print(f"{escape(query)}: {escape(answer.error or 'failed')}")
            progress.advance(task)
    console.print(f"refreshed {len(todo) - failed} of {len(todo)} RDAP answers")
    if failed:
        raise typer.Exit(1)


@contacts_app.command("bootstrap")
def contacts_bootstrap(
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Use this saved bootstrap file (whoisit JSON) instead of downloading.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Store the RDAP bootstrap data (IANA's, via whoisit) so the node can work offline."""
    from node.contacts.rdap import RdapError, download_bootstrap, save_bootstrap

    settings = settings_or_exit(config)
    lab = settings.lab is not None
    if from_file is None:
        if lab:
            fail("lab mode: the node never goes online; use --from-file", 2)
        try:
            text = download_bootstrap()
        except Exception as exc:  # whoisit raises its own and requests' errors
            fail(f"cannot download the RDAP bootstrap data: {exc}")
    else:
        text = from_file.read_text("utf-8", errors="replace")
    try:
        save_bootstrap(settings.rdap_bootstrap_path, text, lab=lab)
    except RdapError as exc:
        fail(str(exc))
    console.print(f"RDAP bootstrap data stored in {settings.rdap_bootstrap_path}")


# ---------------------------------------------------------------- retention


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be erased.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help=f"Only these record types ({', '.join(RETENTION_RULES)})."),
    ] = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Erase every record past its retention time (each erasure is audited, with counts)."""
    from node.keys.list_encryption import ListKeyError
    from node.retention import run_retention
    from node.service import open_engine

    settings = settings_or_exit(config)
    try:
        engine = open_engine(settings)
    except ListKeyError as exc:
        fail(str(exc), 2)
    try:
        results = run_retention(
            engine,
            settings.retention,
            dry_run=dry_run,
            actor=actor,
            reason=reason or "manual run",
            only=only,
        )
    except ValueError as exc:
        fail(str(exc), 2)
    table = Table(title="retention (dry run: nothing erased)" if dry_run else "retention")
    for column in ("record type", "kept for", "older than", "would erase" if dry_run else "erased"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.rule,
            "forever" if r.cutoff is None else f"{r.days:g} days",
            "" if r.cutoff is None else f"{r.cutoff:%Y-%m-%dT%H:%MZ}",
            str(r.count),
        )
    console.print(table)


@retention_app.command("rules")
def retention_rules(config: ConfigOption = None) -> None:
    """The record types and how long each is kept."""
    from node.retention import RULES

    settings = settings_or_exit(config)
    for name, rule in RULES.items():
        days = rule.days(settings.retention)
        kept = "forever" if days <= 0 else f"{days:g} days"
        console.print(f"{name:18} {kept:>10}  {rule.description}")
