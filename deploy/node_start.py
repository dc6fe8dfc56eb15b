"""Start a LIBRA node command in a container, after checking what it needs (the node image's
entry point in docker-compose.yml).

    python /opt/libra/deploy/node_start.py --config /etc/libra/node.toml \\
        --check data --check keys --check geoip -- serve

Each ``--check`` fails with one clear line and exit status 78 (EX_CONFIG) instead of a node
that runs but records nothing useful:

- ``data``: ``data_dir`` exists and this user can write it (a volume the image did not create
  is owned by root);
- ``keys``: every configured key file is readable (compose secrets are bind-mounted with the
  host file's owner and mode: ``chown 10001`` them);
- ``geoip``: ``geoip.country_db`` and ``geoip.asn_db`` are set and are MaxMind-format databases
  of the right kind (without them every sighting is ZZ / AS0);
- ``redis``: the Redis frontier answers (``crawl.frontier = "redis"``).

Then it runs ``libra node COMMAND... --config PATH``: by exec (the node becomes the process),
or with ``--repeat SECONDS`` again and again, SECONDS after each exit (``crawl-worker`` returns
when the frontier is empty; the service waits for the next cycle's work). ``--only-check`` runs
the checks and exits (a health check).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.config import NodeSettings

EX_CONFIG = 78  # sysexits.h: configuration error
CHECKS = ("data", "keys", "geoip", "redis")
# Words in the MaxMind metadata database_type of usable files (MaxMind GeoLite2/GeoIP2 and
# DB-IP name them like this): City and Enterprise databases hold the country too, ISP ones the AS.
COUNTRY_TYPES = ("country", "city", "enterprise")
ASN_TYPES = ("asn", "isp")


class CheckFailed(Exception):
    """A start-up requirement is not met; the message says what to do."""


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"


def check_data(settings: NodeSettings) -> None:
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise CheckFailed(
            f"data_dir {data_dir} does not exist: mount the node's volume there "
            "(docker-compose.yml) or create it"
        )
    try:
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise CheckFailed(
            f"data_dir {data_dir} is not writable by uid {_uid()} ({exc.strerror}): the volume "
            "must be created from the node image, which owns the directory by uid 10001 "
            "(docs/deployment.md)"
        ) from exc


def check_keys(settings: NodeSettings) -> None:
    paths = [
        settings.signing_key_path,
        settings.federation_key_path,
        settings.list_key_path,
        settings.function_key_file,
    ]
    for path in paths:
        if path is None:
            continue
        try:
            empty = not path.read_bytes().strip()
        except OSError as exc:
            raise CheckFailed(
                f"cannot read key file {path} as uid {_uid()} ({exc.strerror}): compose mounts "
                "secrets with the host file's owner and mode; `chown 10001` the files in "
                "deploy/secrets/ (docs/deployment.md)"
            ) from exc
        if empty:
            raise CheckFailed(f"key file {path} is empty: run deploy/make_secrets.py again")


def _database_type(path: Path, what: str, setting: str) -> str:
    import maxminddb

    if not path.is_file():
        raise CheckFailed(
            f"{what} database {path} (geoip.{setting}) is missing: copy the operator's "
            "MaxMind GeoLite2 or DB-IP lite .mmdb file there (docs/deployment.md, GeoIP)"
        )
    try:
        with maxminddb.open_database(str(path)) as reader:
            return str(reader.metadata().database_type)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise CheckFailed(f"{what} database {path} cannot be read: {exc}") from exc


def check_geoip(settings: NodeSettings) -> None:
    wanted = (
        ("country", "country_db", settings.geoip.country_db, COUNTRY_TYPES),
        ("ASN", "asn_db", settings.geoip.asn_db, ASN_TYPES),
    )
    for what, setting, path, kinds in wanted:
        if path is None:
            raise CheckFailed(
                f"geoip.{setting} is not set: without a {what} database every sighting is "
                "attributed to the unknown country/ASN (ZZ / AS0)"
            )
        kind = _database_type(path, what, setting)
        if not any(k in kind.lower() for k in kinds):
            raise CheckFailed(
                f"{path} (geoip.{setting}) is a {kind!r} database, not a {what} database: "
                "are the country and ASN files swapped?"
            )


def check_redis(settings: NodeSettings) -> None:
    crawl = settings.crawl
    if crawl.frontier != "redis":
        raise CheckFailed('the redis check needs crawl.frontier = "redis"')
    import redis

    client = redis.Redis.from_url(crawl.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise CheckFailed(f"the Redis frontier {crawl.redis_url} does not answer: {exc}") from exc
    finally:
        client.close()


CHECK_FUNCTIONS: dict[str, Callable[[NodeSettings], None]] = {
    "data": check_data,
    "keys": check_keys,
    "geoip": check_geoip,
    "redis": check_redis,
}


def run_checks(config: Path, checks: Sequence[str]) -> None:
    """Load the node's settings as the node does and run ``checks`` in order."""
    from node.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise CheckFailed(str(exc)) from exc
    for name in checks:
        CHECK_FUNCTIONS[name](settings)


def _repeat(command: list[str], pause_s: float) -> int:
    """Run ``command`` until SIGTERM/SIGINT, ``pause_s`` after each exit; 0 when stopped."""
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    # As PID 1 a process gets no default signal handling: without these, `docker stop` waits.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        child = subprocess.Popen(command)
        status = child.wait()
        if stopping:
            break
        print(f"node_start: {' '.join(command[:3])} exited with {status}", file=sys.stderr)
        deadline = time.monotonic() + pause_s
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.5, pause_s))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, required=True, help="the node's TOML file")
    parser.add_argument("--check", action="append", choices=CHECKS, default=[])
    parser.add_argument("--only-check", action="store_true", help="check, then exit")
    parser.add_argument("--repeat", type=float, metavar="SECONDS", help="run again after exit")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="`libra node` command and its options"
    )
    args = parser.parse_args(argv)
    if not args.only_check and not args.command:
        parser.error("give the `libra node` command to run (or --only-check)")
    if args.repeat is not None and args.repeat <= 0:
        parser.error("--repeat must be positive")
    try:
        run_checks(args.config, args.check)
    except CheckFailed as exc:
        print(f"node_start: cannot start: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.only_check:
        return 0
    command = ["libra", "node", *args.command, "--config", str(args.config)]
    if args.repeat is not None:
        return _repeat(command, args.repeat)
    sys.stdout.flush()
    os.execvp(command[0], command)  # noqa: S606  (a fixed program, arguments from the command line)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
