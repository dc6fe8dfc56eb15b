"""Create the secret files docker-compose.yml reads from deploy/secrets/ (run once).

    .venv/bin/python deploy/make_secrets.py [--dir deploy/secrets]

Every secret is written 0600 and never overwritten: run it again and only missing files are
made, so keys are never rotated by accident (rotation is a ceremony: docs/deployment.md). The
nodes' public keys (``node_<x>.pub``, 0644, read by the coordinator-register job) are written
again whenever they no longer match the node's signing key. The
containers run as uid 10001 (postgres as 999): give the files to those users, e.g.
``sudo chown 10001 deploy/secrets/* && sudo chown 999 deploy/secrets/postgres_password``.

Both nodes get the same federation key here, as they would through the sealed relay
(`libra node federation sponsor/fetch`); a real federation makes it on the first node only.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protocol.keys import NodeKey  # noqa: E402  (after the path set-up above)

NODES = ("a", "b")


def write_new(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write ``text`` to a new file (0600 unless told); False (untouched) if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def key32() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n"


def make(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    made: list[str] = []

    def new(name: str, text: str, mode: int = 0o600) -> None:
        if write_new(directory / name, text, mode):
            made.append(name)

    password_file = directory / "postgres_password"
    new("postgres_password", secrets.token_urlsafe(32) + "\n")
    password = password_file.read_text(encoding="utf-8").strip()
    # libpq password file: host:port:database:user:password
    new("coordinator_pgpass", f"postgres:5432:libra:libra:{password}\n")
    new("coordinator_signing_key", NodeKey.generate().seed_b64() + "\n")
    federation = key32()
    for node in NODES:
        new(f"node_{node}_signing_key", NodeKey.generate().seed_b64() + "\n")
        signing = (directory / f"node_{node}_signing_key").read_text(encoding="ascii").strip()
        # Public, for the coordinator-register job (a compose config, not a secret): it
        # registers the node without ever seeing the private key. Always from the current seed.
        public_file = directory / f"node_{node}.pub"
        public_text = NodeKey.from_seed_b64(signing).public_key_b64 + "\n"
        if not public_file.exists() or public_file.read_text(encoding="ascii") != public_text:
            public_file.unlink(missing_ok=True)
            new(f"node_{node}.pub", public_text, 0o644)
        new(f"node_{node}_federation_key", federation)
        new(f"node_{node}_list_key", key32())
        new(f"node_{node}_function_key", NodeKey.generate().seed_b64() + "\n")
        seed = (directory / f"node_{node}_function_key").read_text(encoding="ascii").strip()
        public = NodeKey.from_seed_b64(seed).public_key_b64
        # The function's own settings: only its node may call it (docs/operations-function.md).
        new(
            f"function_{node}.toml",
            f'[authorized_keys]\n"node-{node}" = "{public}"\n',
        )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / "deploy" / "secrets")
    args = parser.parse_args()
    made = make(args.dir)
    print(f"{len(made)} new file(s) in {args.dir}: {', '.join(made) or 'none'}")
    for node in NODES:
        seed = (args.dir / f"node_{node}_signing_key").read_text(encoding="ascii").strip()
        key = NodeKey.from_seed_b64(seed)
        print(f"node-{node}: key id {key.key_id}, public key {key.public_key_b64}")
    print("`docker compose up` registers them (the coordinator-register job).")


if __name__ == "__main__":
    main()
