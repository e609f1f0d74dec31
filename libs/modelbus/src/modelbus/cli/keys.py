"""``modelbus keys``: make the signing keys of every role, and show who is trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelbus.trust import ROLES, TRUST_FILE, TrustSettings, generate_keys, key_id, load_trusted
from modelbus.trust.keys import read_trust_file

keys_app = typer.Typer(help="Signing keys: one Ed25519 key pair per role.", no_args_is_help=True)
console = Console()


@keys_app.command("generate")
def generate(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the keys (created).")],
) -> None:
    """Write a key pair per role (existing keys are kept) and the trust file listing them."""
    written = generate_keys(directory)
    for path in written:
        console.print(f"wrote {path}")
    console.print(
        f"roles: {', '.join(ROLES)}\n"
        f"set MODELBUS_SIGNING_KEY={directory} (or one role's {directory}/<role>.key.pem) "
        f"and MODELBUS_TRUSTED_KEYS={directory} (or {directory / TRUST_FILE})"
    )


@keys_app.command("list")
def list_trusted(
    trust_file: Annotated[
        Path | None,
        typer.Option(help="Trust file or key directory (default: MODELBUS_TRUSTED_KEYS)."),
    ] = None,
) -> None:
    """Each role and the ids of the public keys trusted for it."""
    if trust_file is not None:
        path = trust_file / TRUST_FILE if trust_file.is_dir() else trust_file
        keys = {
            role: [key_id(key) for key in found] for role, found in read_trust_file(path).items()
        }
    else:
        trusted = load_trusted(TrustSettings())
        keys = {role: sorted(ids) for role, ids in trusted.keys.items()}
    for role, ids in sorted(keys.items()):
        console.print(f"{role}: {', '.join(ids) or '(none)'}")
