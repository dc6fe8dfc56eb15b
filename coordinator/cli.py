"""`libra coordinator ...`: run the API and manage the node registry."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from .defaults import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR
from .roles import Role

# Everything else is imported by the command that needs it: `libra coordinator --help` must
# not wait for SQLAlchemy, pydantic and DataSketches (benchmarks/bench_cli_startup.py).
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .config import CoordinatorSettings

OPERATOR = "cli"

app = typer.Typer(
    help="The federation coordinator: node registry, verified report ingest, global picture.",
    no_args_is_help=True,
    add_completion=False,
)
node_app = typer.Typer(
    help="Manage the node registry (onboarding, key rotation, revocation).",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")
token_app = typer.Typer(help="API tokens (admin, node, viewer, auditor).", no_args_is_help=True)
app.add_typer(token_app, name="token")
invite_app = typer.Typer(help="Single-use enrollment invitations.", no_args_is_help=True)
app.add_typer(invite_app, name="invite")
audit_app = typer.Typer(help="The hash-chained membership audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
snapshot_app = typer.Typer(help="Signed picture snapshots.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENV_VAR,
        help="Coordinator TOML file (default: ./coordinator.toml). Without any file, "
        "LIBRA_COORDINATOR_DATABASE_URL or _DATA_DIR must say where the database is. "
        "LIBRA_COORDINATOR_* variables override the file's values.",
        dir_okay=False,
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    # soft_wrap: keep paths and ids on one line, copy-pasteable.
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _settings(config: Path | None) -> CoordinatorSettings:
    from .config import ConfigError, load_settings

    # Every caller opens the database or the data directory: no configuration, no defaults.
    try:
        return load_settings(config, require_config=True)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from exc


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _existing_engine(settings: CoordinatorSettings) -> Engine:
    """An engine on a database that exists and holds the coordinator schema, else exit 2.

    Only `init`, `db upgrade` and `serve` create a database: an admin command run with another
    working directory or a mistyped path must not make a new, empty one (its tokens, nodes and
    invitations would be valid nowhere).
    """
    from sqlalchemy.exc import OperationalError

    from .db import make_engine
    from .migrate import current_revision

    url = settings.effective_database_url
    how = "create it with `libra coordinator init` or `libra coordinator db upgrade`"
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        # Checked before connecting: opening a SQLite URL creates the file.
        raise _fail(f"no coordinator database at {sqlite_file}; {how}", 2)
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except OperationalError as exc:  # e.g. the server is down: no traceback for an operator
        engine.dispose()
        raise _fail(f"cannot open database {_redact(url)}: {exc.orig}", 2) from exc
    if revision is None:
        engine.dispose()
        raise _fail(f"database {_redact(url)} holds no coordinator schema; {how}", 2)
    return engine


def _engine(settings: CoordinatorSettings) -> Engine:
    """The existing database, upgraded to the newest schema (as every command does)."""
    from .db import create_schema

    engine = _existing_engine(settings)
    create_schema(engine)
    return engine


@app.command()
def init(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            envvar=CONFIG_ENV_VAR,
            dir_okay=False,
            help="Configuration file to write (refused if it exists).",
        ),
    ] = DEFAULT_CONFIG_FILE,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help="The coordinator's own files (default: var/coordinator beside the config "
            "file); written as an absolute path so commands work from any folder.",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="SQLAlchemy URL (default: SQLite in the data directory)."
        ),
    ] = None,
) -> None:
    """Write a coordinator configuration and create its database (schema at the newest
    revision). The other commands then find it with --config or in the current folder."""
    import tomli_w

    from .config import CoordinatorSettings
    from .db import create_schema, make_engine
    from .migrate import current_revision

    if config.exists():
        raise _fail(f"{config} already exists; refusing to overwrite a configuration", 1)
    values: dict[str, str] = {
        "data_dir": str((data_dir or config.parent / DEFAULT_DATA_DIR).resolve())
    }
    if database_url:
        values["database_url"] = database_url
    try:
        settings = CoordinatorSettings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _fail(f"invalid settings: {exc}", 2) from exc
    config.parent.mkdir(parents=True, exist_ok=True)
    try:
        with config.open("x", encoding="utf-8") as out:  # "x": never clobber a racing init
            out.write(tomli_w.dumps(values))
    except OSError as exc:
        raise _fail(f"cannot write {config}: {exc}", 1) from exc
    engine = make_engine(settings.effective_database_url)
    try:
        create_schema(engine)
        revision = current_revision(engine)
    finally:
        engine.dispose()
    console.print(f"config    {config.resolve()}")
    console.print(f"database  {_redact(settings.effective_database_url)} at revision {revision}")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (overrides the config's host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Listen port (overrides the config).")
    ] = None,
) -> None:
    """Run the coordinator HTTP API with uvicorn."""
    import uvicorn

    from .app import create_app

    settings = _settings(config)
    # uvicorn configures only its own loggers; ingest rejections and internal errors log here.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    api = create_app(settings)
    bind_host, bind_port = host or settings.host, port or settings.port
    console.print(
        f"coordinator on http://{bind_host}:{bind_port} "
        f"(database: {_redact(settings.effective_database_url)})"
    )
    uvicorn.run(api, host=bind_host, port=bind_port, log_level="info")


@node_app.command("add")
def node_add(
    node_id: Annotated[str, typer.Option("--node-id", help="Node id, e.g. 'bka-de-1'.")],
    country: Annotated[str, typer.Option(help="The operating agency's country (ISO alpha-2).")],
    public_key: Annotated[
        str,
        typer.Option(
            help="The node's Ed25519 public key, standard base64 (32 bytes), or @FILE to read "
            "it from a file."
        ),
    ],
    operator: Annotated[
        str | None, typer.Option(help="Operating agency (kept off the public registry).")
    ] = None,
    overlap_hours: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Rotation: the node's other keys stay valid for reports created up to this "
            "many hours from now (default: the key_overlap setting). Ignored for a new node.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Register a node with its public key. For an existing node this adds a key (rotation)."""
    from protocol.models import utcnow

    from .db import new_session
    from .errors import RegistryError
    from .registry import add_node

    key_text = _read_key(public_key)
    settings = _settings(config)
    overlap = timedelta(hours=overlap_hours) if overlap_hours is not None else settings.key_overlap
    engine = _engine(settings)
    try:
        with new_session(engine) as session:
            reg = add_node(
                session,
                node_id=node_id,
                country=country,
                public_key_b64=key_text,
                operator=operator,
                now=utcnow(),
                overlap=overlap,
                actor=OPERATOR,
            )
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    what = "registered node" if reg.new_node else "added a key to node"
    console.print(f"{what} [bold]{reg.node_id}[/]; key id [cyan]{reg.key_id}[/]")


@node_app.command("list")
def node_list(config: ConfigOption = None) -> None:
    """Show every registered node, its keys and its latest report."""
    from .db import new_session
    from .registry import list_nodes

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            views = list_nodes(session)
    finally:
        engine.dispose()
    if not views:
        console.print("no nodes registered")
        return
    table = Table(title="LIBRA nodes")
    for column in ("node", "country", "operator", "status", "keys", "reports", "last report"):
        table.add_column(column)
    for view in views:
        keys = "\n".join(
            f"{k.key_id[:16]}… "
            + (f"revoked {k.revoked_at.isoformat()}" if k.revoked_at else "active")
            for k in view.keys
        )
        table.add_row(
            view.node_id,
            view.country,
            view.operator or "",
            view.status,
            keys,
            str(view.reports),
            view.last_report_at.isoformat() if view.last_report_at else "never",
        )
    console.print(table)


@node_app.command("revoke")
def node_revoke(
    node_id: Annotated[
        str | None, typer.Option("--node-id", help="Revoke this node and all its keys.")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Revoke one key (e.g. after rotation).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a node or a single key; reports signed with it are refused from now on."""
    from protocol.models import utcnow

    from .db import new_session
    from .errors import RegistryError
    from .registry import revoke_key, revoke_node

    if (node_id is None) == (key_id is None):
        raise _fail("give exactly one of --node-id or --key-id", 2)
    engine = _engine(_settings(config))
    now = utcnow()
    try:
        with new_session(engine) as session:
            if node_id is not None:
                revoked = revoke_node(session, node_id, now=now, actor=OPERATOR)
                console.print(f"revoked node [bold]{node_id}[/] ({len(revoked)} active key(s))")
            else:
                assert key_id is not None
                row = revoke_key(session, key_id, now=now, actor=OPERATOR)
                when = row.revoked_at.isoformat() if row.revoked_at else "?"
                console.print(f"key [cyan]{key_id}[/] of node {row.node_id} revoked at {when}")
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()


@node_app.command("approve")
def node_approve(
    node_id: Annotated[str, typer.Argument(help="The enrolled (pending) node to activate.")],
    config: ConfigOption = None,
) -> None:
    """Approve an enrolled node: its reports are accepted from now on."""
    from protocol.errors import ProtocolError
    from protocol.models import utcnow

    from .db import new_session
    from .membership import approve

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            node = approve(session, node_id, now=utcnow(), actor=OPERATOR)
    except ProtocolError as exc:
        raise _fail(exc.message) from exc
    finally:
        engine.dispose()
    console.print(f"node [bold]{node.node_id}[/] ({node.country}) is now active")


@invite_app.command("create")
def invite_create(
    country: Annotated[str, typer.Option(help="Country the new node will report for.")],
    ttl_hours: Annotated[
        float | None, typer.Option(min=0.01, help="Lifetime (default: invitation_ttl).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text kept with the invitation.")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a single-use invitation; the code is printed once and never stored."""
    from protocol.errors import ProtocolError
    from protocol.models import utcnow

    from .db import new_session
    from .membership import create_invitation

    settings = _settings(config)
    ttl = timedelta(hours=ttl_hours) if ttl_hours else settings.invitation_ttl
    engine = _engine(settings)
    try:
        with new_session(engine) as session:
            issued = create_invitation(
                session, country=country, ttl=ttl, now=utcnow(), actor=OPERATOR, note=note
            )
    except ProtocolError as exc:
        raise _fail(exc.message) from exc
    finally:
        engine.dispose()
    err_console.print(
        f"invitation {issued.row.invitation_id} for {issued.row.country}, "
        f"expires {issued.row.expires_at.isoformat()}; give this code to the node operator:"
    )
    print(issued.code)


@invite_app.command("list")
def invite_list(config: ConfigOption = None) -> None:
    """Show invitations and whether they were used."""
    from .db import new_session
    from .membership import pending_invitations

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            rows = pending_invitations(session)
    finally:
        engine.dispose()
    table = Table(title="invitations")
    for column in ("id", "country", "expires", "used by", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.invitation_id,
            row.country,
            row.expires_at.isoformat(),
            row.used_by_node or "",
            row.note or "",
        )
    console.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'OSCE dashboard'.")],
    role: Annotated[Role, typer.Option(help="admin, node, viewer or auditor.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Narrow to these scopes (repeatable; default: all of the role's)."),
    ] = None,
    node_id: Annotated[
        str | None, typer.Option("--node-id", help="Node tokens: the node it acts for.")
    ] = None,
    ttl_days: Annotated[
        float | None, typer.Option(min=0.001, help="Lifetime in days (default: token_ttl).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API token. Only its hash is stored: the token is printed once, on stdout."""
    from protocol.models import utcnow

    from .auth import create_token
    from .db import new_session
    from .errors import TokenError

    settings = _settings(config)
    ttl = timedelta(days=ttl_days) if ttl_days else settings.token_ttl
    engine = _engine(settings)
    try:
        with new_session(engine) as session:
            issued = create_token(
                session, name=name, role=role, scopes=scope, node_id=node_id, now=utcnow(),
                ttl=ttl, actor=OPERATOR,
            )  # fmt: skip
    except TokenError as exc:
        raise _fail(str(exc), 2) from exc
    finally:
        engine.dispose()
    err_console.print(
        f"token {issued.row.token_id} ({issued.row.role}: {issued.row.scopes}) expires "
        f"{issued.row.expires_at.isoformat()}"
    )
    print(issued.token)


@token_app.command("list")
def token_list(config: ConfigOption = None) -> None:
    """Show tokens (never their secrets)."""
    from protocol.models import utcnow

    from .auth import list_tokens
    from .db import new_session

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            rows = list_tokens(session)
    finally:
        engine.dispose()
    table = Table(title="API tokens")
    for column in ("id", "name", "role", "scopes", "node", "expires", "last used", "state"):
        table.add_column(column)
    now = utcnow()
    for row in rows:
        state = "revoked" if row.revoked_at else "expired" if row.expires_at <= now else "active"
        table.add_row(
            row.token_id, row.name, row.role, row.scopes, row.node_id or "",
            row.expires_at.isoformat(),
            row.last_used_at.isoformat() if row.last_used_at else "never", state,
        )  # fmt: skip
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (from `token list`).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token at once."""
    from protocol.models import utcnow

    from .auth import revoke_token
    from .db import new_session
    from .errors import TokenError

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            revoke_token(session, token_id, now=utcnow(), actor=OPERATOR)
    except TokenError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    console.print(f"token {token_id} revoked")


@audit_app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Recompute the audit log's hash chain; exit 1 at the first entry that does not fit."""
    from . import audit
    from .db import new_session

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            check = audit.verify(session)
    finally:
        engine.dispose()
    if not check.ok:
        raise _fail(f"audit log broken at entry {check.first_bad_seq}: {check.reason}")
    console.print(f"audit log intact: {check.entries} entries, head {check.head_hash}")


@audit_app.command("show")
def audit_show(
    after: Annotated[int, typer.Option(min=0, help="Only entries after this seq.")] = 0,
    config: ConfigOption = None,
) -> None:
    """Print the audit log as JSON lines."""
    from . import audit
    from .db import new_session

    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            rows = audit.entries(session, after=after, limit=1_000_000)
    finally:
        engine.dispose()
    for row in rows:
        print(json.dumps(row.model_dump(mode="json"), sort_keys=True))


@snapshot_app.command("key")
def snapshot_key(config: ConfigOption = None) -> None:
    """Print the coordinator's snapshot-signing public key (creates the key if missing)."""
    from .snapshot import SigningKeyError, load_or_create_key

    try:
        key = load_or_create_key(_settings(config).effective_signing_key_file)
    except SigningKeyError as exc:
        raise _fail(str(exc)) from exc
    err_console.print(f"key id {key.key_id}")
    print(key.public_key_b64)


@snapshot_app.command("verify")
def snapshot_verify(
    file: Annotated[Path, typer.Argument(help="Snapshot envelope (GET /v1/picture/snapshot).")],
    public_key: Annotated[
        str, typer.Option(help="Coordinator public key, base64, or @FILE (from `snapshot key`).")
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Log checkpoint (GET /v1/log/checkpoint): also check log inclusion."),
    ] = None,
    inclusion_proof: Annotated[
        Path | None,
        typer.Option(help="GET /v1/log/proof/inclusion answer for the snapshot, at that size."),
    ] = None,
) -> None:
    """Verify a signed snapshot offline; prints the picture's headline figures."""
    from protocol.errors import ProtocolError
    from protocol.keys import decode_public_key

    from .snapshot import privacy_summary, verify_snapshot

    try:
        raw = file.read_bytes()
        picture = verify_snapshot(raw, decode_public_key(_read_key(public_key)))
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc}") from exc
    except ValueError as exc:
        raise _fail(f"public key: {exc}", 2) from exc
    except ProtocolError as exc:
        raise _fail(f"snapshot does NOT verify: {exc.code}: {exc.message}") from exc
    noisy = privacy_summary(picture)  # issue 15: a DP picture's label, else nothing
    console.print(
        f"snapshot verifies: generated {picture.generated_at.isoformat()}, tier {picture.tier}, "
        f"{picture.reports} reports, {picture.totals.matches} {'noisy ' if noisy else ''}matches"
    )
    for line in noisy:
        console.print(line, markup=False, highlight=False)
    if checkpoint is not None or inclusion_proof is not None:
        _snapshot_in_log(raw, public_key, checkpoint, inclusion_proof)  # issue 15


def _snapshot_in_log(
    raw: bytes, public_key: str, checkpoint: Path | None, proof: Path | None
) -> None:
    from protocol.dsse import parse_envelope
    from protocol.errors import ProtocolError
    from protocol.keys import decode_public_key

    from .tlog import verify_snapshot_in_log

    if checkpoint is None or proof is None:
        raise _fail("log inclusion needs both --checkpoint and --inclusion-proof", 2)
    try:
        index, size = verify_snapshot_in_log(
            parse_envelope(raw).payload_bytes(),
            decode_public_key(_read_key(public_key)),
            checkpoint.read_text(encoding="utf-8"),
            proof.read_text(encoding="utf-8"),
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read the checkpoint or proof: {exc}", 2) from exc
    except ProtocolError as exc:
        raise _fail(f"snapshot NOT proven in the log: {exc.code}: {exc.message}") from exc
    except ValueError as exc:
        raise _fail(f"snapshot NOT proven in the log: {exc}") from exc
    console.print(f"snapshot is in the log: leaf {index} of the signed checkpoint of size {size}")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOption = None,
) -> None:
    """Apply migrations up to REVISION (default: head). Safe to repeat."""
    from .db import make_engine
    from .migrate import current_revision, upgrade

    settings = _settings(config)  # creates the database it names, like `init`
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine, revision)
        console.print(
            f"database {_redact(settings.effective_database_url)} "
            f"at revision {current_revision(engine)}"
        )
    finally:
        engine.dispose()


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Show the database's revision and the newest one available."""
    from .migrate import current_revision, head_revision

    engine = _existing_engine(_settings(config))
    try:
        console.print(f"current: {current_revision(engine)}  head: {head_revision(engine)}")
    finally:
        engine.dispose()


def _read_key(value: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _fail(f"cannot read public key file {path}: {exc}") from exc


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    # Never print a database password.
    return make_url(url).render_as_string(hide_password=True)
