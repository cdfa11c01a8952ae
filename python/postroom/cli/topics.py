"""``postroom topics``: list, create and delete topics."""

from __future__ import annotations

import click
from rich.table import Table

from .._core import redacted_url
from .common import (
    broker_option,
    connect,
    emit_json,
    json_option,
    out,
    reports_errors,
    sub_broker_option,
)


@click.group(invoke_without_command=True)
@broker_option
@json_option
@click.pass_context
@reports_errors
def topics(ctx: click.Context, broker_url: str, as_json: bool) -> None:
    """List topics (or create / delete one)."""
    ctx.obj = broker_url
    if ctx.invoked_subcommand is not None:
        return
    broker = connect(broker_url)
    infos = broker.topics()
    if as_json:
        emit_json([{"name": t.name, "partitions": t.partitions,
                    "replication_factor": t.replication_factor} for t in infos])
        return
    table = Table(title=f"topics on {redacted_url(broker_url)}")
    table.add_column("name")
    table.add_column("partitions", justify="right")
    table.add_column("replication", justify="right")
    for t in infos:
        table.add_row(t.name, str(t.partitions), str(t.replication_factor))
    out.print(table)


@topics.command("create")
@click.argument("name")
@click.option("--partitions", default=3, show_default=True)
@click.option("--replication-factor", default=1, show_default=True)
@click.option("--exist-ok", is_flag=True, help="Succeed if the topic already exists.")
@sub_broker_option
@click.pass_obj
@reports_errors
def topics_create(broker_url: str, name: str, partitions: int, replication_factor: int,
                  exist_ok: bool, sub_broker: str | None) -> None:
    """Create a topic."""
    connect(sub_broker or broker_url).create_topic(
        name, partitions, replication_factor=replication_factor, exist_ok=exist_ok)
    out.print(f"created topic {name} ({partitions} partitions)")


@topics.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@sub_broker_option
@click.pass_obj
@reports_errors
def topics_delete(broker_url: str, name: str, yes: bool, sub_broker: str | None) -> None:
    """Delete a topic and all its messages."""
    broker_url = sub_broker or broker_url
    if not yes:
        click.confirm(f"Delete topic {name} and all its messages on {redacted_url(broker_url)}?",
                      abort=True)
    connect(broker_url).delete_topic(name)
    out.print(f"deleted topic {name}")
