"""Register the compose file's nodes at the coordinator, once (the `coordinator-register` job).

    python /opt/libra/deploy/register_nodes.py NODE_TOML=PUBLIC_KEY_FILE ...

Each argument pairs a node's settings file (its ``node_id`` and ``country`` are read from it, so
the registration cannot disagree with the node) with the file holding the node's Ed25519 public
key (base64; deploy/make_secrets.py writes ``deploy/secrets/node_<x>.pub``). The job reads
the coordinator's database settings from ``LIBRA_COORDINATOR_*`` like the coordinator itself,
and is safe to run on every ``docker compose up``: a key already registered to its node is left
alone; a new key for a known node is added as `libra coordinator node add` adds it (rotation).
It never sees a private key. Exit status: 0 all registered, 1 the coordinator refused one (a key
of another node, a revoked node, a country that differs), 2 bad arguments or files.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class Refused(Exception):
    """The registry refused a registration (exit 1)."""


class BadInput(Exception):
    """An argument or file is wrong (exit 2)."""


@dataclass(frozen=True)
class Wanted:
    node_id: str
    country: str
    public_key: str


def read_wanted(argument: str) -> Wanted:
    """``NODE_TOML=PUBLIC_KEY_FILE`` -> what to register."""
    config_text, sep, key_text = argument.partition("=")
    if not sep or not config_text or not key_text:
        raise BadInput(f"{argument!r}: expected NODE_TOML=PUBLIC_KEY_FILE")
    config, key_file = Path(config_text), Path(key_text)
    try:
        settings = tomllib.loads(config.read_text(encoding="utf-8"))
        public_key = key_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{argument}: {exc}") from exc
    node_id, country = settings.get("node_id"), settings.get("country")
    if not isinstance(node_id, str) or not isinstance(country, str):
        raise BadInput(f"{config}: node_id and country must be set")
    if not public_key:
        raise BadInput(f"{key_file} is empty")
    return Wanted(node_id=node_id, country=country, public_key=public_key)


def register(wanted: Sequence[Wanted], now: datetime | None = None) -> list[str]:
    """Register every node that is not yet registered with its key; one line per node."""
    from coordinator.config import ConfigError, load_settings
    from coordinator.db import make_engine, new_session
    from coordinator.errors import RegistryError
    from coordinator.registry import add_node, list_nodes
    from protocol.keys import decode_public_key, key_id

    try:
        settings = load_settings(require_config=True)
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc
    engine = make_engine(settings.effective_database_url)
    lines: list[str] = []
    try:
        with new_session(engine) as session:
            keys = {k.key_id: (v, k) for v in list_nodes(session) for k in v.keys}
        for node in wanted:
            try:
                kid = key_id(decode_public_key(node.public_key))
            except ValueError as exc:
                raise BadInput(f"{node.node_id}: public key: {exc}") from exc
            view, key = keys.get(kid, (None, None))
            if view is not None and key is not None and view.node_id == node.node_id:
                if view.status != "active" or key.revoked_at is not None:
                    state = view.status if key.revoked_at is None else "revoked (this key)"
                    raise Refused(f"node {node.node_id} is {state} at the coordinator")
                lines.append(f"{node.node_id}: already registered (key {kid})")
                continue
            try:
                with new_session(engine) as session:
                    reg = add_node(
                        session,
                        node_id=node.node_id,
                        country=node.country,
                        public_key_b64=node.public_key,
                        now=now or datetime.now(UTC),
                        actor="compose-register",
                    )
            except RegistryError as exc:
                raise Refused(f"{node.node_id}: {exc}") from exc
            what = "registered" if reg.new_node else "added key to"
            lines.append(f"{node.node_id}: {what} node (key {reg.key_id})")
    finally:
        engine.dispose()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or any(a in ("-h", "--help") for a in arguments):
        print(__doc__, file=sys.stderr)
        return 2 if not arguments else 0
    try:
        for line in register([read_wanted(a) for a in arguments]):
            print(line, flush=True)
    except BadInput as exc:
        print(f"register_nodes: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"register_nodes: refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
