"""``postroom lag``: consumer-group lag per partition or stream."""

from __future__ import annotations

import click
from rich.table import Table

from .common import (
    broker_option,
    connect,
    emit_json,
    json_option,
    out,
    reports_errors,
)


@click.command()
@click.argument("group")
@click.argument("topics_", nargs=-1, metavar="[TOPICS]...")
@broker_option
@json_option
@reports_errors
def lag(group: str, topics_: tuple[str, ...], broker_url: str, as_json: bool) -> None:
    """Consumer-group lag per partition (Kafka) or stream (Redis)."""
    rows = connect(broker_url).lag(group, list(topics_) or None)
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"lag of group {group}")
    for column in ("topic", "partition", "committed", "end", "lag", "pending"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["topic"], str(r["partition"]), *("" if r[k] is None else str(r[k])
                                                         for k in ("committed", "end", "lag",
                                                                   "pending")))
    out.print(table)
