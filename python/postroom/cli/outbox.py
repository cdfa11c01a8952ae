"""``postroom outbox``: relay the transactional outbox, migrate and inspect it."""

from __future__ import annotations

import click
from rich.table import Table

from .._core import redacted_url
from ..outbox import Outbox
from .common import (
    broker_option,
    emit_json,
    err,
    json_option,
    out,
    reports_errors,
)

db_option = click.option(
    "--db", "database_url", envvar="POSTROOM_DB", required=True,
    help="The outbox's database: sqlite:///path.db or postgresql://user@host:port/db.")
table_option = click.option("--table", default="postroom_outbox", show_default=True,
                            help="The outbox table.")


@click.group()
def outbox() -> None:
    """Relay the transactional outbox to the broker, and look at it."""


@outbox.command("relay")
@broker_option
@db_option
@table_option
@click.option("--topic", default=None, help="Topic for rows without one (default: their "
              "aggregate type, or the topic template).")
@click.option("--routing", type=click.Choice(["postroom", "debezium"]), default="postroom",
              show_default=True, help="debezium: Debezium's outbox event router defaults, "
              "topic outbox.event.${routedByValue}.")
@click.option("--topic-template", default=None, help="Topic for rows without one, "
              "${routedByValue} being the route-by column's value (Debezium's "
              "route.topic.replacement).")
@click.option("--route-by-field", default="aggregatetype", show_default=True,
              help="The column ${routedByValue} stands for (Debezium's route.by.field).")
@click.option("--additional-placement", default=None, help="Columns copied to headers, in "
              "Debezium's table.fields.additional.placement syntax: column:header[:alias],...")
@click.option("--batch-size", default=500, show_default=True)
@click.option("--poll-interval", default=0.5, show_default=True, help="Seconds between polls "
              "when idle.")
@click.option("--retention", default=0.0, show_default=True,
              help="Delete sent rows older than this many seconds (0: keep them).")
@click.option("--idle-exit", default=None, type=float,
              help="Exit after this many seconds with nothing pending (default: run until "
                   "SIGINT/SIGTERM).")
@json_option
@reports_errors
def outbox_relay(broker_url: str, database_url: str, table: str, topic: str | None,
                 routing: str, topic_template: str | None, route_by_field: str,
                 additional_placement: str | None, batch_size: int, poll_interval: float,
                 retention: float, idle_exit: float | None, as_json: bool) -> None:
    """Publish committed outbox rows until stopped (SIGINT/SIGTERM stop it cleanly)."""
    with Outbox(database_url, broker_url, table=table, topic=topic, batch_size=batch_size,
                poll_interval=poll_interval, retention=retention, routing=routing,
                topic_template=topic_template, route_by_field=route_by_field,
                additional_headers=additional_placement) as box:
        if not as_json:
            err.print(f"relaying {table} from {redacted_url(database_url)} to "
                      f"{redacted_url(broker_url)} (Ctrl-C to stop)")
        counters = box.run(idle_timeout=idle_exit)
        status = box.status()
    result = {"published": counters.published, "failed": counters.failed,
              "batches": counters.batches, "pending": status.pending}
    if as_json:
        emit_json(result)
    else:
        out.print(f"published {counters.published}, failed {counters.failed}, "
                  f"still pending {status.pending}")


@outbox.command("migrate")
@db_option
@table_option
@json_option
@reports_errors
def outbox_migrate(database_url: str, table: str, as_json: bool) -> None:
    """Create the outbox table, or add the relay's columns to an existing one laid out as
    Debezium's documentation shows (id, aggregatetype, aggregateid, type, payload), in place
    (PostgreSQL). It waits for the transactions writing the table; its rows become pending,
    to be published once each in the order they were written."""
    with Outbox(database_url, table=table, migrate=True) as box:
        added = box.added_columns
        payload = box.payload_column
        pending = box.status().pending
    if as_json:
        emit_json({"table": table, "added_columns": added, "payload": payload,
                   "pending": pending})
    elif added:
        out.print(f"{table}: added {', '.join(added)}; payload {payload}; "
                  f"{pending} row(s) pending")
    else:
        out.print(f"{table}: nothing to add (payload {payload}, {pending} row(s) pending)")


@outbox.command("status")
@db_option
@table_option
@json_option
@reports_errors
def outbox_status(database_url: str, table: str, as_json: bool) -> None:
    """Pending, failed and sent rows, the oldest pending row's age, and why rows failed."""
    with Outbox(database_url, table=table) as box:
        status = box.status()
    if as_json:
        emit_json({"pending": status.pending, "failed": status.failed, "sent": status.sent,
                   "oldest_pending_age": status.oldest_pending_age,
                   "failed_rows": [vars(r) for r in status.failed_rows]})
        return
    age = ("-" if status.oldest_pending_age is None
           else f"{status.oldest_pending_age:.1f} s")
    out.print(f"{table}: pending {status.pending} (oldest {age}), failed {status.failed}, "
              f"sent {status.sent}")
    if status.failed_rows:
        failed = Table(title="failed rows (fix, then: postroom outbox requeue)")
        for column in ("seq", "id", "aggregate", "topic", "error"):
            failed.add_column(column)
        for r in status.failed_rows:
            failed.add_row(str(r.seq), r.id, r.aggregate_id, r.topic, r.error)
        out.print(failed)


@outbox.command("requeue")
@db_option
@table_option
@json_option
@reports_errors
def outbox_requeue(database_url: str, table: str, as_json: bool) -> None:
    """Put failed rows back to pending, after fixing why they failed."""
    with Outbox(database_url, table=table) as box:
        n = box.requeue_failed()
    if as_json:
        emit_json({"requeued": n})
    else:
        out.print(f"requeued {n} failed row(s)")
