"""``modelbus acls``: the table of who may do what on the bus, and applying it to the broker."""

from __future__ import annotations

from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console

from modelbus.bus.acls import acl_table
from modelbus.cli.context import cli_settings

acls_app = typer.Typer(help="Kafka ACLs: one principal per service, one for producers.")
console = Console()

ModelsOption = Annotated[
    list[str] | None,
    typer.Option("--models", help="Models to grant access to (repeatable; default: settings)."),
]


@acls_app.command("apply")
def apply(
    models: ModelsOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the table; change nothing.")
    ] = False,
) -> None:
    """Create every ACL of the table on the broker (run as admin; existing ACLs are kept)."""
    from modelbus.bus.acl_admin import apply_acls

    settings = cli_settings()
    table = acl_table(models or settings.models)
    for grant in table:
        console.print(str(grant), highlight=False)
    if dry_run:
        console.print(f"{len(table)} ACLs (dry run: nothing applied)")
        return
    try:
        apply_acls(settings.bootstrap_servers, table)
    except KafkaException as error:
        console.print(f"[red]applying ACLs failed: {error.args[0].name()}[/red]")
        console.print(
            "run as the super user (source <run dir>/credentials/admin.env) against a broker "
            "started with KAFKA_SECURITY=sasl"
        )
        raise typer.Exit(1) from error
    console.print(f"{len(table)} ACLs applied on {settings.bootstrap_servers}")


@acls_app.command("show")
def show() -> None:
    """The ACLs the broker holds now."""
    from modelbus.bus.acl_admin import current_acls

    for grant in current_acls(cli_settings().bootstrap_servers):
        console.print(str(grant), highlight=False)
