"""``postroom dlq``: list, show, group, replay, purge, export and import dead letters."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .._core import DeadLetter
from .common import (
    F,
    broker_option,
    connect,
    emit_json,
    err,
    json_option,
    out,
    reports_errors,
    text,
)


def _when(value: str | None) -> float | None:
    """Epoch seconds, an ISO 8601 time, or an age like 30m, 2h, 7d (that long ago)."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(value[:-1]) * units[value[-1]]
        if value.replace(".", "", 1).isdigit():
            return float(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r}: give epoch seconds, an ISO 8601 time or an age "
                                 "like 30m, 2h or 7d") from None


def filter_options(fn: F) -> F:
    """The filters shared by dlq list, stats, replay and export."""
    for option in reversed([
        click.option("--since", help="Letters from this time on (ISO 8601, epoch s, or 2h)."),
        click.option("--until", help="Letters before this time."),
        click.option("--key", help="Only this record key."),
        click.option("--header", help="A header that must be present: NAME or NAME=VALUE."),
        click.option("--error-type", default="", help="Substring of the error type."),
        click.option("--original-topic", default="", help="Where the letters came from."),
        click.option("--group", "fingerprint", default="",
                     help="An error group (its fingerprint, as `dlq stats` shows it)."),
        click.option("--text", default="", help="Substring of the value."),
    ]):
        fn = option(fn)
    return fn


def _filters(since: str | None, until: str | None, key: str | None, header: str | None,
             error_type: str, original_topic: str, fingerprint: str,
             text: str) -> dict[str, Any]:
    return {"since": _when(since), "until": _when(until), "key": key, "header": header,
            "error_type": error_type, "original_topic": original_topic,
            "fingerprint": fingerprint, "text": text}


def _time(ms: int) -> str:
    if ms < 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _letter_json(d: DeadLetter, full: bool = False) -> dict[str, Any]:
    r = d.record
    item: dict[str, Any] = {
        "id": d.id, "timestamp_ms": r.timestamp_ms, "convention": d.convention,
        "error_type": d.error_type, "error_message": d.error_message,
        "original_topic": d.original_topic, "original_partition": d.original_partition,
        "original_offset": d.original_offset, "group": d.group, "attempts": d.attempts,
        "failed_at": d.failed_at, "replay_count": d.replay_count,
        "replayed_from": d.replayed_from, "replay_id": d.replay_id,
        "value_truncated": d.value_truncated, "value_length": d.value_length,
        "fingerprint": d.fingerprint, "key": text(r.key),
    }
    if full:
        item.update({"reason": d.reason, "error_stack": d.error_stack, "value": text(r.value),
                     "headers": [[k, text(v)] for k, v in r.headers]})
    return item


def _progress_bar(what: str) -> tuple[Progress, Callable[[int, int], bool]]:
    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True)
    task = bar.add_task(what, total=None)

    def update(done: int, total: int) -> bool:
        bar.update(task, completed=done, total=total)
        return True

    return bar, update


@click.group()
def dlq() -> None:
    """Dead letters: list, show, stats, replay, purge, export, import."""


@dlq.command("list")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--limit", default=50, show_default=True)
@click.option("--page", default=1, show_default=True, help="Page number (of --limit letters).")
@click.option("--oldest-first", is_flag=True, help="Page from the oldest letter.")
@click.option("--all", "include_settled", is_flag=True,
              help="Include letters already replayed or resolved.")
@json_option
@reports_errors
def dlq_list(topic: str, broker_url: str, ids: tuple[str, ...], limit: int, page: int,
             oldest_first: bool, include_settled: bool, as_json: bool, **filters: Any) -> None:
    """List the dead letters of TOPIC, newest first."""
    if page < 1 or limit < 1:
        raise click.BadParameter("--page and --limit start at 1")
    letters = connect(broker_url).dead_letters(topic).list(
        limit=limit, skip=(page - 1) * limit, newest_first=not oldest_first,
        include_settled=include_settled, ids=ids, **_filters(**filters))
    if as_json:
        emit_json([_letter_json(d) for d in letters])
        return
    table = Table(title=f"dead letters in {topic} (page {page})")
    for column in ("id", "time (UTC)", "error", "message", "from", "replays"):
        table.add_column(column, overflow="fold")
    for d in letters:
        table.add_row(d.id, _time(d.record.timestamp_ms), d.error_type or d.convention,
                      (d.error_message or "")[:80], d.original_topic, str(d.replay_count))
    out.print(table)
    if not letters:
        out.print("no dead letters match" + ("" if include_settled else
                                             " (add --all to include settled ones)"))


@dlq.command("show")
@click.argument("topic")
@click.argument("letter_id")
@broker_option
@json_option
@reports_errors
def dlq_show(topic: str, letter_id: str, broker_url: str, as_json: bool) -> None:
    """Show one dead letter: why and where it failed, its headers and value."""
    d = connect(broker_url).dead_letters(topic).show(letter_id)
    item = _letter_json(d, full=True)
    if as_json:
        emit_json(item)
        return
    table = Table(show_header=False, title=d.id)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in item.items():
        if k not in ("headers", "error_stack", "value") and v not in (None, ""):
            table.add_row(k, str(v))
    out.print(table)
    headers = Table(title="headers")
    headers.add_column("name")
    headers.add_column("value", overflow="fold")
    for k, v in item["headers"]:
        headers.add_row(k, "" if v is None else str(v)[:300])
    out.print(headers)
    if d.error_stack:
        out.print("[bold]stack[/]\n" + d.error_stack)
    out.print("[bold]value[/]\n" + str(item["value"]))


@dlq.command("stats")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--all", "include_settled", is_flag=True,
              help="Include letters already replayed or resolved.")
@json_option
@reports_errors
def dlq_stats(topic: str, broker_url: str, include_settled: bool, as_json: bool,
              **filters: Any) -> None:
    """Group the dead letters of TOPIC by error fingerprint."""
    letters = connect(broker_url).dead_letters(topic)
    bar, update = _progress_bar("reading dead letters")
    with bar:
        groups = letters.stats(include_settled=include_settled, progress=update,
                               **_filters(**filters))
    rows: list[dict[str, Any]] = [
            {"fingerprint": g.fingerprint, "count": g.count, "error_type": g.error_type,
             "message": g.message, "top_frame": g.top_frame,
             "first_seen": _time(g.first_seen_ms), "last_seen": _time(g.last_seen_ms),
             "original_topics": sorted(g.original_topics), "groups": sorted(g.groups),
             "conventions": g.conventions, "sample_id": g.sample_id} for g in groups]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"dead letters in {topic} by error ({sum(g.count for g in groups):,})")
    for column in ("group", "count", "error", "message", "first seen", "last seen", "from"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["fingerprint"], f"{r['count']:,}", r["error_type"], r["message"][:80],
                      r["first_seen"], r["last_seen"], ", ".join(r["original_topics"]))
    out.print(table)


@dlq.command("replay")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--to", default=None, help="Destination topic (default: each letter's original).")
@click.option("--rate", default=0.0, show_default=True, help="Letters per second (0: no limit).")
@click.option("--dry-run", is_flag=True, help="Show what would go where; send nothing.")
@click.option("--again", is_flag=True, help="Also letters replayed before.")
@click.option("--max-replays", default=3, show_default=True,
              help="Loop guard: letters replayed this often go to the parking lot.")
@click.option("--parking-topic", default=None, help="Default: TOPIC.parking.")
@click.option("--keep-failure-headers", is_flag=True,
              help="Keep the letters' failure headers (postroom-dlt-*, kafka_dlt-*, "
                   "__connect.errors.*, ...) in the replayed records.")
@json_option
@reports_errors
def dlq_replay(topic: str, broker_url: str, ids: tuple[str, ...], to: str | None, rate: float,
               dry_run: bool, again: bool, max_replays: int, parking_topic: str | None,
               keep_failure_headers: bool, as_json: bool, **filters: Any) -> None:
    """Send dead letters of TOPIC back (redrive). Resumable: run it again after a crash."""
    letters = connect(broker_url).dead_letters(topic)
    bar, update = _progress_bar("replaying")
    with bar:
        report = letters.replay(to=to, rate=rate, dry_run=dry_run, again=again,
                                max_replays=max_replays, parking_topic=parking_topic,
                                keep_failure_headers=keep_failure_headers,
                                ids=ids, progress=None if dry_run else update,
                                **_filters(**filters))
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        verb = "would replay" if dry_run else "replayed"
        out.print(f"{verb} {report.selected if dry_run else report.replayed} letters"
                  f"{'' if dry_run else f', parked {report.parked}'}; skipped "
                  f"{report.skipped} already settled; {report.without_target} without a "
                  "known original topic (use --to)" + (" — cancelled" if report.cancelled
                                                       else ""))
        if report.truncated:
            out.print(f"left out {report.truncated} letters whose value was cut to fit the "
                      "dead-letter topic: replay those from their original topic and offset "
                      "(dlq show ID)")
        if not dry_run:
            out.print(f"replay id {report.replay_id} (header postroom-replay-id)")
        table = Table(title="per destination")
        table.add_column("topic")
        table.add_column("letters", justify="right")
        for t, n in sorted(report.per_target.items()):
            table.add_row(t, f"{n:,}")
        out.print(table)
    if report.cancelled:
        sys.exit(1)


@dlq.command("purge")
@click.argument("topic")
@click.argument("letter_ids", nargs=-1)
@broker_option
@click.option("--group", "fingerprint", default="", help="Every letter of this error group.")
@click.option("--note", default="", help="Why (kept in the ledger on Kafka).")
@click.option("--truncate", "truncate_to", default=None, metavar="PARTITION:OFFSET",
              help="Kafka: delete all records of PARTITION below OFFSET, for good.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def dlq_purge(topic: str, letter_ids: tuple[str, ...], broker_url: str, fingerprint: str,
              note: str, truncate_to: str | None, yes: bool) -> None:
    """Settle dead letters: delete them (Redis) or mark them resolved (Kafka)."""
    letters = connect(broker_url).dead_letters(topic)
    if truncate_to:
        partition, _, offset = truncate_to.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise click.BadParameter("--truncate takes PARTITION:OFFSET, e.g. 0:1500")
        if not yes:
            click.confirm(f"Delete every record of {topic}[{partition}] below offset {offset} "
                          "for good?", abort=True)
        low = letters.truncate(int(partition), int(offset), confirm=True)
        out.print(f"{topic}[{partition}] now starts at offset {low}")
        return
    ids = list(letter_ids)
    if fingerprint:
        ids += [d.id for d in letters.list(limit=1 << 62, fingerprint=fingerprint)]
    if not ids:
        raise click.UsageError("name letters (ids) or a --group to purge")
    if not yes:
        click.confirm(f"Purge {len(ids)} dead letters of {topic}?", abort=True)
    n = letters.purge(ids, note=note)
    out.print(f"purged {n} dead letters")


@dlq.command("export")
@click.argument("topic")
@broker_option
@filter_options
@click.option("--id", "ids", multiple=True, help="Only these letters (repeatable).")
@click.option("--out", "path", default="-", show_default=True, help="File, or - for stdout.")
@reports_errors
def dlq_export(topic: str, broker_url: str, ids: tuple[str, ...], path: str,
               **filters: Any) -> None:
    """Write dead letters as JSON Lines (binary safe)."""
    letters = connect(broker_url).dead_letters(topic)
    target: str | IO[str] = sys.stdout if path == "-" else path
    n = letters.export(target, ids=ids, **_filters(**filters))
    err.print(f"exported {n} dead letters")


@dlq.command("import")
@click.argument("topic")
@click.argument("path")
@broker_option
@click.option("--to", default=None, help="Destination topic (default: TOPIC).")
@reports_errors
def dlq_import(topic: str, path: str, broker_url: str, to: str | None) -> None:
    """Send the letters of a JSON Lines export to TOPIC, byte for byte."""
    n = connect(broker_url).dead_letters(topic).import_(path, to=to)
    out.print(f"imported {n} dead letters into {to or topic}")
