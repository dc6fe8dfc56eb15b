"""`libra node federation ...`: enroll with an invitation and relay the federation key."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli.common import ConfigOption, console, fail, settings_or_exit

app = typer.Typer(
    help="Join a federation (invitation, enrollment) and relay the federation key.",
    no_args_is_help=True,
)


@app.command("enroll")
def enroll_cmd(
    invitation: Annotated[
        str, typer.Option(envvar="LIBRA_INVITATION", help="Invitation code from the admin.")
    ],
    operator: Annotated[str, typer.Option(help="Operating agency, e.g. 'BKA'.")],
    config: ConfigOption = None,
) -> None:
    """Enroll this node: creates the X25519 key if missing, stores the node token (0600)."""
    from node.federation.enroll import (
        TOKEN_FILE_NAME,
        X25519_FILE_NAME,
        EnrollError,
        create_x25519_key,
        enroll,
        load_x25519_key,
        save_token,
    )
    from node.keys.files import KeyFileError, load_signing_key

    settings = settings_or_exit(config)
    x_path = settings.data_dir / X25519_FILE_NAME
    try:
        x_key = load_x25519_key(x_path) if x_path.exists() else create_x25519_key(x_path)
        signing = load_signing_key(settings.signing_key_path)
        done = enroll(
            settings.coordinator_url,
            invitation=invitation,
            node_id=settings.node_id,
            country=settings.country,
            operator=operator,
            ed25519_public_key=signing.public_key_b64,
            x25519_key=x_key,
        )
        save_token(settings.data_dir / TOKEN_FILE_NAME, done.node_token)
    except (KeyFileError, EnrollError) as exc:
        fail(str(exc))
    console.print(
        f"enrolled [bold]{done.node_id}[/] (key {done.key_id[:16]}…), status {done.status}; "
        "an admin must approve it (`libra coordinator node approve`), and a sponsoring node "
        "must seal the federation key (`libra node federation sponsor`)."
    )


@app.command("sponsor")
def sponsor_cmd(config: ConfigOption = None) -> None:
    """Seal this node's federation key to every member that still needs it from us."""
    from node.federation.enroll import TOKEN_FILE_NAME, EnrollError, load_token, sponsor
    from node.keys.files import KeyFileError, load_federation_key

    settings = settings_or_exit(config)
    try:
        result = sponsor(
            settings.coordinator_url,
            load_token(settings.data_dir / TOKEN_FILE_NAME),
            load_federation_key(settings.federation_key_path),
        )
    except (KeyFileError, EnrollError) as exc:
        fail(str(exc))
    if not result.sealed_for:
        console.print("no member is waiting for the federation key from this node")
        return
    console.print("sealed the federation key for: " + ", ".join(result.sealed_for))


@app.command("fetch-key")
def fetch_key_cmd(
    min_sponsors: Annotated[
        int, typer.Option(min=1, help="Require this many sponsors to agree on the key.")
    ] = 1,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace a different key in the file (e.g. the one `init` made)."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Fetch and open the sealed federation key; writes the federation key file (0600)."""
    from node.federation.enroll import (
        TOKEN_FILE_NAME,
        X25519_FILE_NAME,
        EnrollError,
        fetch_federation_key,
        load_token,
        load_x25519_key,
        save_federation_key,
    )
    from node.keys.files import KeyFileError

    settings = settings_or_exit(config)
    try:
        fetched = fetch_federation_key(
            settings.coordinator_url,
            load_token(settings.data_dir / TOKEN_FILE_NAME),
            load_x25519_key(settings.data_dir / X25519_FILE_NAME),
            min_sponsors=min_sponsors,
        )
        changed = save_federation_key(settings.federation_key_path, fetched.key, replace=replace)
    except (KeyFileError, EnrollError) as exc:
        fail(str(exc))
    what = "stored at" if changed else "already in"
    console.print(
        f"federation key {what} {settings.federation_key_path} "
        f"(sealed by {', '.join(fetched.sponsors)})"
    )
