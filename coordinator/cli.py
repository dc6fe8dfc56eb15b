"""`libra coordinator ...`: run the API and manage the node registry."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine, make_url

from protocol.models import utcnow

from .config import CONFIG_ENV_VAR, ConfigError, CoordinatorSettings, load_settings
from .db import create_schema, make_engine, new_session
from .errors import RegistryError
from .registry import add_node, list_nodes, revoke_key, revoke_node

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

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar=CONFIG_ENV_VAR,
        help="Coordinator TOML file (default: ./coordinator.toml if present, else built-in "
        "defaults). LIBRA_COORDINATOR_* variables override its values.",
        dir_okay=False,
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    # soft_wrap: keep paths and ids on one line, copy-pasteable.
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _settings(config: Path | None) -> CoordinatorSettings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from exc


def _engine(settings: CoordinatorSettings) -> Engine:
    engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    return engine


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
    config: ConfigOption = None,
) -> None:
    """Register a node with its public key. For an existing node this adds a key (rotation)."""
    key_text = _read_key(public_key)
    engine = _engine(_settings(config))
    try:
        with new_session(engine) as session:
            reg = add_node(
                session,
                node_id=node_id,
                country=country,
                public_key_b64=key_text,
                operator=operator,
                now=utcnow(),
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
    if (node_id is None) == (key_id is None):
        raise _fail("give exactly one of --node-id or --key-id", 2)
    engine = _engine(_settings(config))
    now = utcnow()
    try:
        with new_session(engine) as session:
            if node_id is not None:
                revoked = revoke_node(session, node_id, now=now)
                console.print(f"revoked node [bold]{node_id}[/] ({len(revoked)} active key(s))")
            else:
                assert key_id is not None
                row = revoke_key(session, key_id, now=now)
                when = row.revoked_at.isoformat() if row.revoked_at else "?"
                console.print(f"key [cyan]{key_id}[/] of node {row.node_id} revoked at {when}")
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
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
    # Never print a database password.
    return make_url(url).render_as_string(hide_password=True)
