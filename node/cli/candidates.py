"""`libra node candidates ...`: review new material found beside known material (issue 14).

The queue (list, show), verdicts (confirm, reject), false-positive control of list entries
(flags, disable-entry, enable-entry) and the flood guard's held matches (held, release,
discard). See docs/discovery.md. Never shows an image; hash values only with `show --hashes`.
Every consultation and decision is audited with ``--actor`` (default: the login name).
Exit codes: 0 done, 1 an error (unknown id, already decided), 2 bad usage or configuration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from node.cli.common import ConfigOption, console, err, fail, settings_or_exit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.engine import Engine

    from node.config import NodeSettings
    from node.keys.list_encryption import ListKey
    from node.matching.matcher import MatchIndex

# node.discovery.models.CANDIDATE_STATES and HELD_STATES, named here so that `--help` need not
# import the database models.
CANDIDATE_STATES = ("pending", "confirmed", "rejected")
HELD_STATES = ("held", "released", "discarded")

candidates_app = typer.Typer(
    help="New material beside known material: review candidates, flagged entries, held matches.",
    no_args_is_help=True,
)

ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who (recorded in the audit log; default: the login name)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
MAX_ID = 2**63 - 1  # database ids are 64-bit: a larger number is bad usage, not a crash


def _open(config: Path | None) -> tuple[NodeSettings, Engine, ListKey]:
    """Settings, database and list key, without importing the crawl (start-up time)."""
    from node.db import make_engine
    from node.keys.list_encryption import ListKeyError, load_list_key

    settings = settings_or_exit(config)
    try:
        key = load_list_key(settings.list_key_path)
        return settings, make_engine(settings.effective_database_url, key), key
    except ListKeyError as exc:
        fail(str(exc), 2)


def _actor(actor: str | None) -> str:
    from node import audit

    return actor or audit.default_actor()


def _when(value: object) -> str:
    return "-" if value is None else str(value).replace("T", " ")[:16]


def _index_change(settings: NodeSettings, engine: Engine, key: ListKey) -> Callable[..., None]:
    """Call before a change of the lists; the function returned, called after it with the
    entries ``added`` and ``removed``, updates the persisted match index in place (or lets it
    be rebuilt when it was missing, unreadable or stale before the change)."""
    from node.keys.list_encryption import ListKeyError
    from node.matching.index import IndexFormatError, persist
    from node.matching.matcher import Thresholds

    before: tuple[MatchIndex, str] | None
    try:
        before = persist.load(settings.index_dir, key, Thresholds.of(settings.match))
    except (IndexFormatError, ListKeyError):
        before = None  # rebuilt after the change
    stamp = persist.db_stamp(engine)

    def apply(
        added: Iterable[tuple[int, str, str]] | None = None, removed: list[int] | None = None
    ) -> None:
        persist.apply_change(
            engine, settings.index_dir, key, before, stamp, added=added, removed=removed
        )

    return apply


# ----------------------------------------------------------------------------- the queue


@candidates_app.command("list")
def list_(
    state: Annotated[
        str, typer.Option("--state", help=f"{', '.join(CANDIDATE_STATES)} or all.")
    ] = "pending",
    host: Annotated[str | None, typer.Option("--host", help="Only this host.")] = None,
    hoster: Annotated[str | None, typer.Option("--hoster", help="Only this hoster.")] = None,
    country: Annotated[str | None, typer.Option("--country", help="Only this country.")] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Only scores from this (0-100).")
    ] = None,
    members: Annotated[
        bool, typer.Option("--members", help="Also cluster members, not only representatives.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (1-1000).")] = 100,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many.")] = 0,
    as_json: JsonOption = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Candidates, best score first (then the most recently seen)."""
    from node.discovery.queue import Filters, QueueError, consulted, list_candidates

    if state != "all" and state not in CANDIDATE_STATES:
        fail(f"--state must be one of {', '.join(CANDIDATE_STATES)} or all", 2)
    filters = Filters(
        state=None if state == "all" else state,
        host=host,
        hoster=hoster,
        country=country,
        min_score=min_score,
        members=members,
        limit=limit,
        offset=offset,
    )
    try:
        filters.check()
    except QueueError as exc:
        fail(str(exc), 2)
    _settings, engine, _key = _open(config)
    rows = list_candidates(engine, filters)
    consulted(
        engine,
        "candidates",
        actor=_actor(actor),
        via="list CLI",
        details={**filters.as_dict(), "returned": len(rows)},
    )
    if as_json:
        console.print_json(json.dumps({"candidates": rows}))
        return
    if not rows:
        console.print("no candidates")
        return
    table = Table("id", "score", "imgs", "seen", "host", "where", "last seen")
    table.columns[4].overflow = "fold"  # a host is evidence: wrapped, never cut
    for r in rows:
        table.add_row(
            str(r["id"]),
            f"{r['score']:.0f}",
            str(r["members"]),
            str(r["times_seen"]),
            escape(str(r["host"])),
            escape(f"{r['country']} AS{r['asn']} {r['hoster']}"),
            _when(r["last_seen_at"])[:10],
        )
    console.print(table)


@candidates_app.command()
def show(
    candidate_id: Annotated[int, typer.Argument(help="Candidate id.", min=1, max=MAX_ID)],
    hashes: Annotated[
        bool, typer.Option("--hashes", help="Also the hash values (for an authorised tool).")
    ] = False,
    as_json: JsonOption = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """A candidate's evidence: where it is, why it scored, its cluster. Never the image."""
    from node.discovery.queue import QueueError, candidate_detail, consulted

    _settings, engine, _key = _open(config)
    try:
        detail = candidate_detail(engine, candidate_id, hashes=hashes)
    except QueueError as exc:
        fail(str(exc))
    consulted(
        engine,
        f"candidate:{candidate_id}",
        actor=_actor(actor),
        via="show CLI",
        details={"hashes": hashes},
    )
    if as_json:
        console.print_json(json.dumps(detail))
        return
    _print_detail(detail)


def _print_detail(d: dict[str, Any]) -> None:
    size = f"{d['width']}x{d['height']}" if d["width"] and d["height"] else "-"
    lines = [
        ("state", d["state"]),
        ("score", f"{d['score']:.0f}"),
        ("url", d["url"]),
        ("final url", d["final_url"]),
        ("page", d["page_url"]),
        ("host", d["host"]),
        ("hoster", f"{d['hoster']} (AS{d['asn']}, {d['country']})"),
        ("server", d["server_ip"] or "-"),
        (
            "seen",
            f"{d['times_seen']} cycle(s), {_when(d['first_seen_at'])} .. "
            f"{_when(d['last_seen_at'])}",
        ),
        (
            "image",
            f"{d['format'] or '-'} {size}, {d['bytes'] or '-'} bytes, "
            f"PDQ quality {d['pdq_quality'] if d['pdq_quality'] is not None else '-'}",
        ),
    ]
    if d["representative_id"] != d["id"]:
        lines.append(("cluster", f"member of candidate {d['representative_id']}"))
    decision = d["decision"]
    if decision["decided_at"]:
        lines.append(
            (
                "decided",
                f"{_when(decision['decided_at'])} by {decision['decided_by']}: "
                f"{decision['reason'] or ''}",
            )
        )
        if decision["category"]:
            lines.append(("category", decision["category"]))
    console.print(f"candidate {d['id']}", highlight=False)
    for label, value in lines:
        console.print(f"  {label:<10} {escape(str(value))}", highlight=False)
    console.print("  reasons:", highlight=False)
    for reason in d["reasons"]:
        console.print(
            f"    {reason.get('points', 0):>5g}  {escape(str(reason.get('signal')))}: "
            f"{escape(str(reason.get('detail', '')))}",
            highlight=False,
        )
    if len(d["cluster"]) > 1:
        console.print(f"  cluster ({len(d['cluster'])} images):", highlight=False)
        for m in d["cluster"]:
            mark = "*" if m["representative"] else " "
            console.print(f"   {mark}{m['id']:>6}  {escape(m['url'])}", highlight=False)
    if "hashes" in d:
        console.print("  hashes:", highlight=False)
        for m in d["cluster"]:
            for family, value in m["hashes"].items():
                if value:
                    console.print(f"    {m['id']:>6} {family:<6} {value}", highlight=False)


# ----------------------------------------------------------------------------- verdicts


@candidates_app.command()
def confirm(
    candidate_id: Annotated[
        int, typer.Argument(help="Candidate id (its whole cluster).", min=1, max=MAX_ID)
    ],
    category: Annotated[str, typer.Option("--category", help="Category of the new list entries.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audit log).")] = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Confirm: the cluster's hashes join the private list (source "discovered")."""
    from node.discovery.verdicts import VerdictError
    from node.discovery.verdicts import confirm as confirm_candidate

    if not category.strip():
        fail("--category must not be empty", 2)
    settings, engine, key = _open(config)
    update_index = _index_change(settings, engine, key)
    try:
        verdict = confirm_candidate(engine, candidate_id, _actor(actor), category, reason)
    except VerdictError as exc:
        fail(str(exc))
    update_index(added=verdict.added)
    console.print(
        f"candidate {verdict.candidate_id} confirmed ({len(verdict.member_ids)} image(s)): "
        f"list version {verdict.list_version_id}, {len(verdict.entry_ids)} new entries, "
        f"{verdict.duplicates} already listed",
        highlight=False,
    )


@candidates_app.command()
def reject(
    candidate_id: Annotated[
        int, typer.Argument(help="Candidate id (its whole cluster).", min=1, max=MAX_ID)
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audit log).")],
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Reject: the cluster's hashes join the negative list (no candidate, no match again)."""
    from node.discovery.verdicts import VerdictError
    from node.discovery.verdicts import reject as reject_candidate
    from node.matching.index import persist
    from node.matching.matcher import Thresholds

    if not reason.strip():
        fail("--reason must not be empty", 2)
    settings, engine, key = _open(config)
    # Which list entries the rejected images match (false-positive control): the persisted
    # index finds PDQ within the node's distance, as a crawl would.
    index = persist.current(engine, settings.index_dir, key, Thresholds.of(settings.match))
    try:
        verdict = reject_candidate(
            engine,
            candidate_id,
            _actor(actor),
            reason,
            flag_after=settings.discovery.flag_after_rejections,
            index=index,
        )
    except VerdictError as exc:
        fail(str(exc))
    console.print(
        f"candidate {verdict.candidate_id} rejected ({len(verdict.member_ids)} image(s)): "
        f"{verdict.negative_added} hashes added to the negative list, "
        f"{verdict.negative_known} already there",
        highlight=False,
    )
    for entry_id, images in sorted(verdict.matched_entries.items()):
        flagged = " (now flagged)" if entry_id in verdict.flagged else ""
        console.print(
            f"list entry {entry_id} matched {images} rejected image(s){flagged}", highlight=False
        )


# ----------------------------------------------------------------------------- entry flags


@candidates_app.command()
def flags(
    everything: Annotated[
        bool, typer.Option("--all", help="Also entries with rejected hits, not flagged.")
    ] = False,
    as_json: JsonOption = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """List entries flagged (they matched rejected images) or disabled."""
    from node.discovery.flags import list_flags
    from node.discovery.queue import consulted

    _settings, engine, _key = _open(config)
    rows = list_flags(engine, everything=everything)
    consulted(
        engine, "entry_flags", actor=_actor(actor), via="flags CLI", details={"all": everything}
    )
    if as_json:
        console.print_json(json.dumps({"flags": [r.as_dict() for r in rows]}))
        return
    if not rows:
        console.print("no flagged entries")
        return
    table = Table("entry", "family", "source", "hits", "flagged", "disabled")
    for r in rows:
        table.add_row(
            str(r.entry_id),
            r.family or "-",
            escape(r.source or "-"),
            str(r.rejected_hits),
            _when(r.flagged_at.isoformat() if r.flagged_at else None),
            _when(r.disabled_at.isoformat() if r.disabled_at else None),
        )
    console.print(table)


def _set_entry(
    entry_id: int, reason: str, actor: str | None, config: Path | None, on: bool
) -> None:
    from node.discovery import flags as entry_flags

    if not reason.strip():
        fail("--reason must not be empty", 2)
    settings, engine, key = _open(config)
    update_index = _index_change(settings, engine, key)
    try:
        if on:
            entry_flags.enable(engine, entry_id, _actor(actor), reason)
        else:
            entry_flags.disable(engine, entry_id, _actor(actor), reason)
    except entry_flags.FlagError as exc:
        fail(str(exc))
    row = entry_flags.entry_row(engine, entry_id)
    if on and row is not None:
        update_index(added=[row])
    else:
        update_index(removed=[entry_id])
    state = "enabled: it matches again" if on else "disabled: it is never matched"
    console.print(f"list entry {entry_id} {state}", highlight=False)


@candidates_app.command("disable-entry")
def disable_entry(
    entry_id: Annotated[
        int, typer.Argument(help="List entry id (see `flags`).", min=1, max=MAX_ID)
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audit log).")],
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop a list entry from matching (false positives); audited, reversible."""
    _set_entry(entry_id, reason, actor, config, False)


@candidates_app.command("enable-entry")
def enable_entry(
    entry_id: Annotated[int, typer.Argument(help="List entry id.", min=1, max=MAX_ID)],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audit log).")],
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Let a disabled list entry match again; audited."""
    _set_entry(entry_id, reason, actor, config, True)


# ----------------------------------------------------------------------------- flood guard


@candidates_app.command()
def held(
    state: Annotated[str, typer.Option("--state", help=f"{', '.join(HELD_STATES)}.")] = "held",
    as_json: JsonOption = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Matches the flood guard held back from reports, per list entry."""
    from node.discovery.flood import list_held
    from node.discovery.queue import consulted

    if state not in HELD_STATES:
        fail(f"--state must be one of {', '.join(HELD_STATES)}", 2)
    _settings, engine, _key = _open(config)
    rows = list_held(engine, state)
    consulted(
        engine,
        "held",
        actor=_actor(actor),
        via="held CLI",
        details={"state": state, "returned": len(rows)},
    )
    if as_json:
        console.print_json(json.dumps({"held": rows}))
        return
    if not rows:
        console.print(f"no {state} sightings")
        return
    table = Table("entry", "source", "sightings", "cycles", "first held")
    for r in rows:
        table.add_row(
            str(r["entry_id"]),
            escape(str(r["source"] or "-")),
            str(r["sightings"]),
            ", ".join(map(str, r["cycles"][:5])) + (" ..." if len(r["cycles"]) > 5 else ""),
            _when(r["first_held_at"]),
        )
    console.print(table)
    for r in rows:
        console.print(f"entry {r['entry_id']}: {escape(str(r['reason']))}", highlight=False)


SightingOption = Annotated[
    list[int] | None,
    typer.Option(
        "--sighting",
        help="Only this held sighting (repeatable) instead of an entry.",
        min=1,
        max=MAX_ID,
    ),
]


def _held_decision(
    entry_id: int | None,
    sighting: list[int] | None,
    reason: str,
    actor: str | None,
    config: Path | None,
    keep: bool,
) -> None:
    from node.discovery import flood

    if (entry_id is None) == (not sighting):
        fail("give a list entry id or --sighting ids, not both", 2)
    if not keep and not reason.strip():
        fail("--reason must not be empty", 2)
    settings, engine, _key = _open(config)
    try:
        if keep:
            decision = flood.release(
                engine,
                entry_id=entry_id,
                sighting_ids=sighting,
                actor=_actor(actor),
                reason=reason,
            )
        else:
            decision = flood.discard(
                engine,
                entry_id=entry_id,
                sighting_ids=sighting,
                actor=_actor(actor),
                reason=reason,
                flag_after=settings.discovery.flag_after_rejections,
            )
    except flood.HeldError as exc:
        fail(str(exc))
    console.print(f"{len(decision.sighting_ids)} sighting(s) {decision.state}", highlight=False)
    for entry in decision.flagged:
        err.print(f"[yellow]list entry {entry} flagged:[/] see `libra node candidates flags`")


@candidates_app.command()
def release(
    entry_id: Annotated[
        int | None, typer.Argument(help="List entry id.", min=1, max=MAX_ID)
    ] = None,
    sighting: SightingOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (audit log).")] = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Release held sightings: reports carry them like any other."""
    _held_decision(entry_id, sighting, reason, actor, config, True)


@candidates_app.command()
def discard(
    entry_id: Annotated[
        int | None, typer.Argument(help="List entry id.", min=1, max=MAX_ID)
    ] = None,
    sighting: SightingOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audit log).")] = "",
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Discard held sightings: never reported; they count against the entry."""
    _held_decision(entry_id, sighting, reason, actor, config, False)
